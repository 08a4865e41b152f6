"""Multi-turn evaluation (``python -m drift_verl.eval``), plots, and running a job as a user would."""

"""drift-verl: DRIFT (Decoupled Rollouts and Importance-Weighted Fine-Tuning) as a verl recipe."""

__version__ = "0.1.0"

"""Who owns which process, and what reaches the terminal: ``plugin`` (verl's plugin entry point: registry entries
in every process) and ``import_hooks`` (its one deferred registration), ``launch`` (``python -m drift_verl.main``'s
job) and ``config`` (its checks before Ray starts), ``hydra_hooks`` (the monitor under verl's own entry point),
``health`` (the job monitor and bounded waits), ``quiet`` and ``console`` (the quiet console) and ``run_files``
(a run's metrics and console logs)."""

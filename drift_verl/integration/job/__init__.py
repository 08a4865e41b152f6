"""Who owns which process, and what reaches the terminal: ``plugin`` (verl's plugin entry point: registry entries
in every process, one of them deferred to verl's import of its registry), ``config`` (the job checks
:mod:`drift_verl.main` makes before Ray starts), ``hydra_hooks`` (the monitor under verl's own entry point),
``health`` (the job monitor and bounded waits), ``quiet`` and ``console`` (the quiet console) and ``run_files``
(a run's metrics and console logs)."""

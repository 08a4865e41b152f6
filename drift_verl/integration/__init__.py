"""drift-verl inside verl, in three rooms:

- ``training``: the DRIFT trainer and its traffic with verl (the trainer's phases, rollout I/O, the replicas'
  lifecycle, the feedback agent loop, the run's report, which store a job's config rolls out into);
- ``job``: who owns which process and what reaches the terminal (verl's plugin entry point, the launch of
  ``python -m drift_verl.main`` and its checks before Ray starts, the Hydra callbacks under verl's own entry
  point, the job monitor, the console and the run's files);
- ``services``: what the others call (the capped verifier workers, turning trajectories made elsewhere into a
  store).
"""

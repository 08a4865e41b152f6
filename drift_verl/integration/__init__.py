"""drift-verl inside verl, in two rooms and one service:

- ``training``: the DRIFT trainer and its traffic with verl (the trainer's phases, rollout I/O, the replicas'
  lifecycle, the feedback agent loop, the run's report, which store a job's config rolls out into, and stores
  imported from trajectories made elsewhere);
- ``job``: who owns which process and what reaches the terminal (verl's plugin entry point, the launch of
  ``python -m drift_verl.main`` and its checks before Ray starts, the Hydra callbacks under verl's own entry
  point, the job monitor, the console and the run's files);
- ``verifier``: verifier calls in capped worker processes, called by both rooms and by reward functions
  (``reward_fns/``, users' own), which import ``isolated`` from this path: a reward file's bytes are part of the
  fingerprint of every store made with it, so this path stays where such files already name it.
"""

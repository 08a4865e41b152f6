"""drift-verl inside verl, three kinds of module:

- the DRIFT trainer and its traffic with verl: ``trainer``, ``rollout_io``, ``replicas``, ``report``, the feedback
  agent loop ``feedback_loop``, and ``store_identity``;
- who owns which process: ``plugin`` (verl's plugin entry point: registry entries, in every process),
  ``import_hooks`` (its one deferred registration), ``launch`` (``python -m drift_verl.main``'s job), ``hydra_hooks``
  (what Hydra's job callbacks add under verl's own entry point), ``health`` (the job monitor), and the console
  (``quiet``, ``console``, ``run_files``);
- services the others call: ``verifier`` (verifier calls in capped worker processes), ``store_import``, and
  ``config`` (the job checks before Ray starts).
"""

"""The DRIFT trainer on verl's v1 trainer: ``trainer`` (the three phases), ``rollout_io`` (phase 1's traffic with
verl's agent-loop workers and TransferQueue, and the rollout replicas on verl's lifecycle),
``feedback_loop`` (the multi-turn environment as verl agent loop ``drift_feedback``), ``report`` (what a run tells
its user), ``store_identity`` (which store a job's config rolls out into) and ``store_import`` (trajectories
made elsewhere into a store, tokenised as the feedback loop does)."""

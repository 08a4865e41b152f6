"""Services the trainer and the CLIs call: ``verifier`` (verifier calls in capped worker processes) and
``store_import`` (trajectories made elsewhere into a store, tokenised as the feedback loop does)."""

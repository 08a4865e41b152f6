"""The rollout replicas on verl's lifecycle, for a trainer that replaces verl's loop.

verl's synchronous loop keeps the vLLM replicas asleep (weights and KV cache freed on GPUs) while the actor
trains and wakes them with the new weights through ``update_weights``, which expects them asleep. DRIFT does
the same around its phases: awake with the current policy for rollouts and validation only, one weight sync
per new policy. Every call into the replicas is bounded: a dead replica would make it wait forever.
"""

from __future__ import annotations

from drift_verl.integration.job.health import bounded


class ReplicaLifecycle:
    """Mixin for a verl v1 trainer (``checkpoint_manager``, ``global_steps``) with a ``health`` config."""

    def on_init_end(self):
        # replaces verl's PPOTrainerSync.on_init_end, which is this first sync (of the loaded checkpoint's or the
        # starting weights) unbounded
        self._bounded("the first weight sync into the vLLM rollout servers", self.checkpoint_manager.update_weights,
                      self.global_steps)
        self._replicas_step = self.global_steps  # the step whose weights the replicas hold; None: asleep

    def _replicas_current(self) -> None:
        """Wake the replicas with the current policy unless they hold it."""
        if self._replicas_step == self.global_steps:
            return
        if self._replicas_step is not None:  # awake with older weights: update_weights expects them asleep
            self._sleep_replicas()
        self._bounded("the weight sync into the vLLM rollout servers", self.checkpoint_manager.update_weights,
                      self.global_steps)
        self._replicas_step = self.global_steps

    def _sleep_replicas(self) -> None:
        if self._replicas_step is not None:
            self._bounded("putting the vLLM rollout servers to sleep", self.checkpoint_manager.sleep_replicas)
            self._replicas_step = None

    def _validate_current(self) -> dict:
        """verl's validation (multi-turn, same agent loop) on the current weights, remembered for the summary."""
        self._replicas_current()
        metrics = self._validate()
        self.validation_history.append((self.global_steps, metrics))
        return metrics

    def _bounded(self, what: str, fn, *args) -> None:
        bounded(what, self.health.weight_sync_timeout_s, "weight_sync_timeout_s", fn, *args)

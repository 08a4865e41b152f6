"""The DRIFT trainer: verl v1 trainer mode ``drift`` (``recipe=drift`` sets ``trainer.v1.trainer_mode=drift``).

It reuses the synchronous trainer's workers, rollout replicas, agent loop, validation and checkpointing, and
replaces its loop with DRIFT's three phases per round:

1. rollouts: the frozen reference policy (the weights the replicas hold when the round starts) answers every
   training prompt ``rollout.n`` times through the feedback agent loop, into the trajectory store
   (:mod:`drift_verl.core.store`), shard by shard (resumable, reused when it matches);
2. weights: returns and group-normalised importance weights (:mod:`drift_verl.core.weights`);
3. update: ``drift.epochs`` passes of weighted SFT over the store in the order :mod:`drift_verl.core.schedule`
   gives, each mini-batch (``ppo_mini_batch_size`` whole prompt groups) one ``update_actor`` call with the
   ``drift`` policy loss (:mod:`drift_verl.core.loss`). Each checkpoint records that order; a resumed run whose
   checkpoint was cut another way stops before training.

With ``drift.rounds > 1`` the updated policy becomes the next round's reference (iterative DRIFT).
``drift.phases`` runs phase 1 alone (``[rollouts]``: the store is the product) or phases 2-3 alone
(``[weights,update]``: from ``drift.store``, made elsewhere, or from this configuration's own finished store).
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf, open_dict
from verl.protocol import DataProto
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.metric import reduce_metrics
from verl.utils.py_functional import rename_dict
from verl.utils.tracking import Tracking, ValidationGenerationsLogger
from verl.workers.utils.padding import left_right_2_no_padding

from drift_verl.core import plots
from drift_verl.core.config import DriftConfig
from drift_verl.core.loss import nll_metric, padded_batch
from drift_verl.core.schedule import Schedule, batch_digest, check_order, fill_missing_shards, write_order
from drift_verl.core.store import StoreError, TrajectoryStore, broken_trajectories, returns_and_groups
from drift_verl.core.weights import step_weights, weigh
from drift_verl.integration.job import console, run_files
from drift_verl.integration.training import report
from drift_verl.integration.training.rollout_io import ReplicaLifecycle, ShardRolloutBuffer, VerlRollouts
from drift_verl.integration.training.store_identity import (first_round_spec, open_for_training,
                                                             require_finished, rollout_spec)

TRAIN_COLUMNS = ["prompt_ids", "response_ids", "response_mask", "turn_spans"]


@register_trainer("drift")
class DriftTrainer(ReplicaLifecycle, ShardRolloutBuffer, PPOTrainerSync):
    # verl 0.9.1's v1 trainer sets ``self.trainer_mode`` to the mode that named its class (``drift``) and runs every
    # mode but ``sync`` asynchronously (replay buffer, prompt refills, TransferQueue state in checkpoints). DRIFT's
    # phases are synchronous: the name only selects this class. tests/integration/test_trainer_update.py checks that
    # verl still sets it where this catches it.
    trainer_mode = property(lambda self: "sync", lambda self, registered_name: None)

    @functools.cached_property
    def drift(self) -> DriftConfig:
        return DriftConfig.from_section(self.config.drift)

    @property
    def health(self):
        return self.drift.health

    @functools.cached_property
    def given_store(self) -> TrajectoryStore | None:
        """``drift.store``: a store made elsewhere to train from (``drift.phases=[weights,update]``)."""
        return open_for_training(self.drift.store, self.config) if self.drift.store else None

    @property
    def samples_per_prompt(self) -> int:
        return int(self.given_store.spec["n"] if self.given_store else self.config.actor_rollout_ref.rollout.n)

    @property
    def num_prompts(self) -> int:
        if self.given_store:
            return self.given_store.num_prompts
        return min(len(self.train_dataset), self.drift.max_prompts or len(self.train_dataset))

    @functools.cached_property
    def schedule(self) -> Schedule:
        """``ppo_mini_batch_size`` whole prompt groups per optimizer step."""
        return Schedule.of(self.num_prompts, int(self.config.actor_rollout_ref.actor.ppo_mini_batch_size),
                           self.samples_per_prompt, self.drift.shuffle_window, self.drift.epochs, self.drift.rounds,
                           self.drift.seed)

    def _init_dataloader(self):
        """verl sizes the LR schedule's horizon from dataset / train_batch_size x total_epochs; DRIFT's optimizer
        steps are rounds x epochs x mini-batches in the store: warm-up and decay follow those."""
        super()._init_dataloader()
        self.total_training_steps = self.schedule.total_steps
        with open_dict(self.config):
            self.config.actor_rollout_ref.actor.optim.total_training_steps = self.total_training_steps

    def _save_checkpoint(self):
        """verl's checkpoint, plus the mini-batch order its steps were cut by (written first: a folder verl's
        tracker names always holds it)."""
        folder = os.path.join(self.config.trainer.default_local_dir, f"global_step_{self.global_steps}")
        write_order(folder, self.schedule)
        super()._save_checkpoint()

    def _load_checkpoint(self):
        """verl's resume; then refuse a checkpoint written under another mini-batch order (before any training:
        going on would train other batches than the run it continues)."""
        super()._load_checkpoint()
        if self.global_steps > 0:
            trainer = self.config.trainer
            folder = (trainer.resume_from_path if trainer.resume_mode == "resume_path"
                      else os.path.join(trainer.default_local_dir, f"global_step_{self.global_steps}"))
            check_order(os.path.abspath(folder), self.schedule)

    def _run_dir(self) -> Path:
        path = Path(self.config.trainer.default_local_dir)
        (path / "plots").mkdir(parents=True, exist_ok=True)
        return path

    def _store(self, round_index: int) -> TrajectoryStore:
        """The round's store, named by a fingerprint of everything that shapes its rollouts (not beta/gamma)."""
        if round_index == 0:
            spec = first_round_spec(self.config, self.drift)
        else:  # the policy that ended the previous round, identified by its checkpoint (also when resumed mid-round)
            reference = {"run": str(self._run_dir().resolve()), "step": self.schedule.round_start(round_index)}
            spec = rollout_spec(self.config, self.drift, reference, round_index)
        return TrajectoryStore(self.drift.store_dir, spec, self.num_prompts, self.drift.prompts_per_shard)

    # ------------------------------------------------------------------ phase 1: rollouts
    def _phase_rollouts(self, round_index: int) -> TrajectoryStore:
        store = self._store(round_index)
        missing = store.missing_shards()
        if missing and self.global_steps != self.schedule.round_start(round_index):
            raise StoreError(
                f"{store.dir}: {len(missing)} shard(s) missing, but round {round_index} already trained up to step "
                f"{self.global_steps}, so its reference policy is no longer loaded. Restore the store, or restart the "
                f"round from checkpoint global_step_{self.schedule.round_start(round_index)} (trainer.resume_from_path)."
            )
        if missing:
            self._replicas_current()  # the round's frozen reference: the policy as the round starts
        rollouts = VerlRollouts(self.train_dataset, self.agent_loop_manager, self.replay_buffer, self.global_steps,
                                store.agent_loop)
        start = time.time()
        with console.progress(total=store.num_shards, initial=store.num_shards - len(missing),
                              desc=f"DRIFT round {round_index} phase 1: rollouts (shards)") as bar:
            trajectories, tokens = fill_missing_shards(store, missing, self.drift.shards_in_flight, rollouts,
                                                       on_written=lambda _shard: bar.update(1))
        wall = time.time() - start
        store.verify(int(self.config.actor_rollout_ref.rollout.n))  # never train on a damaged store
        self.reference_metrics, stats = report.rollout_quality(store, self.drift.env.max_turns)
        stats.update({"drift/rollout/wall_s": wall, "drift/rollout/new_trajectories": trajectories,
                      "drift/rollout/reused_shards": store.num_shards - len(missing),
                      "drift/rollout/trajectories_per_s": trajectories / wall if trajectories else 0.0,
                      "drift/rollout/tokens_per_s": tokens / wall if trajectories else 0.0})
        self.logger.log(data=stats, step=self.global_steps)
        self.phase_times[f"round {round_index} phase 1 (rollouts)"] = wall
        console.say(f"[drift] trajectory store: {store.dir}")
        return store

    def _stored(self, round_index: int) -> TrajectoryStore:
        """Phase 1 skipped (``drift.phases=[weights,update]``): the given store, or this config's own, complete."""
        store = self.given_store or self._store(round_index)
        if not self.given_store:
            require_finished(store, self.drift.phases)
        store.verify(self.samples_per_prompt)
        # the environment that made the store (an imported one records its longest conversation)
        self.reference_metrics, stats = report.rollout_quality(store, int(store.spec["env"]["max_turns"]))
        self.logger.log(data=stats, step=self.global_steps)
        console.say(f"[drift] trajectory store: {store.dir} (phase 1 skipped: drift.phases={self.drift.phases})")
        return store

    # ------------------------------------------------------------------ phase 2: weights
    def _phase_weights(self, store: TrajectoryStore, round_index: int) -> np.ndarray:
        start, drift, config = time.time(), self.drift, self.drift.weight_config()
        returns, groups, solved = returns_and_groups(store, config.gamma, config.repetition_coef, config.partial_credit)
        weights, stats = weigh(returns, groups, solved, config, broken_trajectories(store))
        histogram = stats.pop("weights/histogram")
        self.logger.log(data={f"drift/{k}": v for k, v in stats.items()}, step=self.global_steps)
        plots_dir = self._run_dir() / "plots"
        png = plots.weight_plots(weights, groups, plots_dir / f"round{round_index}_weights.png")
        if not store.absent_fields:  # another agent loop records no turns: no plot of zeros
            plots.turn_plot(self.reference_metrics, drift.env.max_turns,
                            plots_dir / f"round{round_index}_reference_by_turn.png")
        (plots_dir / f"round{round_index}_weights.json").write_text(json.dumps({**stats, "histogram": histogram}, indent=2))
        self.phase_times[f"round {round_index} phase 2 (weights)"] = time.time() - start
        console.say(f"[drift] weights: ESS fraction {stats['weights/ess_fraction_mean']:.3f}, max "
                    f"{stats['weights/max']:.2f}, degenerate groups {stats['weights/degenerate_group_share']:.2%}"
                    + (f", {stats['weights/broken_trajectories']} trajectories broken by the environment (weight 0)"
                       if stats["weights/broken_trajectories"] else "") + "; "
                    f"plot {png}")
        return weights

    # ------------------------------------------------------------------ phase 3: weighted SFT
    def _update(self, rows: list[dict], weights: np.ndarray) -> dict:
        """One optimizer step of verl's actor on these trajectories, each trained with its weight.

        The whole step's weights are normalised here, before verl splits the step into micro-batches and ranks
        (``drift.loss_normalization``, :func:`drift_verl.core.weights.step_weights`): exact whatever the split.
        verl's own ``_update_actor`` does not fit (it takes a TransferQueue ``KVBatchMeta`` and the rollout
        temperature), so the step carries the settings it sends, with temperature 1 and the whole step as one
        mini-batch; ``tests/integration/test_trainer_update.py`` reads them from verl's source, so a setting verl
        adds fails a test."""
        data = self.config.data
        weight_sum = float(np.sum(weights))
        weights = step_weights(weights, self.drift.loss_normalization)
        tensors = padded_batch(rows, weights, data.max_prompt_length, data.max_response_length,
                               self.tokenizer.pad_token_id, self.drift.train_turns)
        batch = left_right_2_no_padding(DataProto.from_dict(tensors=tensors).to_tensordict())
        tu.assign_non_tensor(batch, calculate_entropy=False, distillation_use_topk=False, distillation_only=False,
                             global_batch_size=len(rows), mini_batch_size=len(rows), epochs=1, seed=self.drift.seed,
                             dataloader_kwargs={"shuffle": False}, compute_loss=True,
                             temperature=1.0)  # the policy's own NLL, whatever temperature the rollouts used
        metrics = rename_dict(tu.get(self.actor_rollout_wg.update_actor(batch), "metrics"), "actor/")
        metrics["perf/mfu/actor"] = metrics.pop("actor/mfu")
        return {**nll_metric(reduce_metrics(metrics)), "drift/update/weight_sum": weight_sum}  # before normalising

    def _phase_update(self, store: TrajectoryStore, weights: np.ndarray, round_index: int) -> None:
        start, schedule = time.time(), self.schedule
        sizes = store.shard_sizes()
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        cache: dict[int, list[dict]] = {}  # shards of the window(s) the current step falls in, read when first used
        with console.progress(total=schedule.steps_per_round,
                              initial=self.global_steps - schedule.round_start(round_index),
                              desc=f"DRIFT round {round_index} phase 3: weighted SFT (steps)") as bar:
            for epoch, picks, window in schedule.remaining_steps(sizes, round_index, self.global_steps):
                for shard in set(cache) - window:
                    del cache[shard]
                for shard in {s for s, _ in picks} - set(cache):
                    cache[shard] = store.read_shard(shard, TRAIN_COLUMNS).to_pylist()
                step_start = time.time()
                metrics = self._update([cache[s][r] for s, r in picks], weights[[offsets[s] + r for s, r in picks]])
                self.global_steps += 1
                metrics.update({"training/global_step": self.global_steps, "training/epoch": epoch,
                                "drift/round": round_index, "drift/update/step_s": time.time() - step_start,
                                "drift/update/batch_digest": batch_digest(picks)})
                self._after_step(metrics, end_of_round=schedule.position(self.global_steps).round > round_index)
                bar.update(1)
        self.phase_times[f"round {round_index} phase 3 (update)"] = time.time() - start

    def _after_step(self, metrics: dict, end_of_round: bool) -> None:
        self.logger.log(data=metrics, step=self.global_steps)  # first: kept even if checkpoint/validation then dies
        trainer = self.config.trainer
        if end_of_round or (trainer.save_freq > 0 and self.global_steps % trainer.save_freq == 0):
            self._save_checkpoint()  # always at the end of a round: the next round's reference
        if end_of_round or (trainer.test_freq > 0 and self.global_steps % trainer.test_freq == 0):
            self.logger.log(data=self._validation(), step=self.global_steps)
            if not end_of_round:
                self._sleep_replicas()  # training goes on

    def _validation(self) -> dict:
        """verl's validation on the current policy, with one line for the user: the metrics that matter."""
        start = time.time()
        console.show(f"[drift] validation at step {self.global_steps} ...")
        metrics = self._validate_current()
        console.say(report.validation_line(self.global_steps, metrics, time.time() - start))
        return metrics

    def _fixed_context_repeats(self) -> dict | None:
        """``drift.non_repeat_contexts``: the first round's reference and the trained policy (the last checkpoint)
        on the same turn-2 contexts of the first round's store, where selection cannot move the rate."""
        if not (self.drift.non_repeat_contexts and self.drift.trains):
            return None
        store = self.given_store or self._store(0)
        if store.absent_fields:
            return {"unavailable": f"the store's agent loop ({store.agent_loop}) records no answers"}
        console.show(f"[drift] fixed-context repeats on {self.drift.non_repeat_contexts} turn-2 contexts ...")
        env = self.drift.env
        checkpoint = self._run_dir() / f"global_step_{self.global_steps}"
        return report.fixed_context_repeats(store, self.config.actor_rollout_ref.model.path,
                                            checkpoint, self.drift.non_repeat_contexts, env.turn_max_tokens,
                                            env.answer_format)

    # ------------------------------------------------------------------ driver
    def fit(self, agent_loop_manager):
        self.agent_loop_manager, trainer = agent_loop_manager, self.config.trainer
        run_files.ensure_metrics_path(run_files.run_dir(self.config))  # verl's file logger: into the run folder
        self.logger = Tracking(project_name=trainer.project_name, experiment_name=trainer.experiment_name,
                               default_backend=trainer.logger, config=OmegaConf.to_container(self.config, resolve=True))
        # verl's validation logs trainer.log_val_generations samples through it
        self.validation_generations_logger = ValidationGenerationsLogger(trainer.project_name, trainer.experiment_name)
        self.phase_times, self.validation_history, self.reference_metrics = {}, [], {}
        store = None  # stays None when a resumed run had already finished every round
        if self.global_steps == 0 and self.drift.trains and trainer.get("val_before_train", True):
            self.logger.log(data=self._validation(), step=0)
        for round_index in range(self.schedule.position(self.global_steps).round, self.drift.rounds):
            store = self._phase_rollouts(round_index) if self.drift.rolls_out else self._stored(round_index)
            self._sleep_replicas()
            if not self.drift.trains:
                break  # drift.phases=[rollouts]: the store is the product
            weights = self._phase_weights(store, round_index)
            self._phase_update(store, weights, round_index)
        self._shutdown_dump_executor()
        # verl's validation dumps are all written now (its dump executor is drained)
        gains = report.validation_gains(trainer.get("validation_data_dir"), self.validation_history,
                                        self.drift.env.max_turns)
        console.say(report.summary(self.phase_times, self.validation_history,
                                   self._run_dir() if self.drift.trains else None, store, gains,
                                   self._fixed_context_repeats() if store is not None else None))
        console.close()  # the driver's quiet console stops waiting for this process

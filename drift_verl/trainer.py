"""The DRIFT trainer: verl v1 trainer mode ``drift`` (``recipe=drift`` sets ``trainer.v1.trainer_mode=drift``).

It reuses the synchronous trainer's workers, rollout replicas, agent loop, validation and checkpointing, and
replaces its loop with DRIFT's three phases per round:

1. rollouts: the frozen reference policy (the weights the replicas hold when the round starts; nothing is
   pushed during the pass) answers every training prompt ``rollout.n`` times through the feedback agent loop,
   into the :class:`~drift_verl.store.TrajectoryStore`, a few shards in flight, each written whole (resumable,
   reused when it matches);
2. weights: returns and group-normalised importance weights (:mod:`drift_verl.weights`), with diagnostics;
3. update: ``drift.epochs`` passes of weighted SFT over the store, streamed shard by shard, each mini-batch one
   ``update_actor`` call with the ``drift`` policy loss (:mod:`drift_verl.loss`).

With ``drift.rounds > 1`` the updated policy becomes the next round's reference (iterative DRIFT).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
from omegaconf import OmegaConf, open_dict
from tqdm import tqdm
from verl.protocol import DataProto
from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu
from verl.utils.metric import reduce_metrics
from verl.utils.py_functional import rename_dict
from verl.utils.tracking import Tracking, ValidationGenerationsLogger
from verl.workers.utils.padding import left_right_2_no_padding

from drift_verl import plots
from drift_verl.batch import padded_batch
from drift_verl.config import DriftConfig
from drift_verl.errors import ClearError
from drift_verl.health import HealthConfig, bound_replay_buffer, bounded
from drift_verl.metrics import multi_turn_metrics, validation_summary
from drift_verl.rollout_io import collect, submit
from drift_verl.schedule import batch_digest, epoch_order, epoch_seed
from drift_verl.store import StoreError, TrajectoryStore, content_identity, returns_and_groups, rollout_spec
from drift_verl.weights import WeightConfig, diagnostics, group_codes, trajectory_weights

TRAIN_COLUMNS = ["prompt_ids", "response_ids", "response_mask", "turn_spans"]


@register_trainer("drift")
class DriftTrainer(PPOTrainerSync):
    def _build_replay_buffer(self):
        # Everywhere verl consults trainer_mode (replay buffer, checkpoint contents) DRIFT is synchronous;
        # the name "drift" only selects this class.
        self.trainer_mode = "sync"
        buffer = super()._build_replay_buffer()
        # verl polls TransferQueue every 2 s for finished prompts; a rollout shard or a validation pass of a few
        # seconds would wait a second on average for nothing
        buffer.poll_interval = 0.5
        bound_replay_buffer(buffer, self.health.rollout_stall_timeout_s)
        return buffer

    # ------------------------------------------------------------------ rollout replicas, on verl's lifecycle
    # verl's synchronous loop keeps the replicas asleep (weights and KV cache freed on GPUs) while the actor
    # trains, and wakes them with the new weights by update_weights, which expects them asleep. DRIFT does the
    # same around its phases: awake with the current policy for rollouts and validation only.
    def on_init_end(self):
        super().on_init_end()  # verl's: update_weights after loading a checkpoint
        self._replicas_step = self.global_steps

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

    def _bounded(self, what: str, fn, *args) -> None:
        """A call into the replicas, bounded: a dead replica would make it wait forever."""
        bounded(what, self.health.weight_sync_timeout_s, "weight_sync_timeout_s", fn, *args)

    def _init_dataloader(self):
        """verl sizes the run (and the LR schedule's horizon) from dataset / train_batch_size x total_epochs; DRIFT's
        optimizer steps are rounds x epochs x mini-batches in the store: warm-up and decay follow those."""
        super()._init_dataloader()
        self.total_training_steps = self.drift.rounds * self._round_start(1)
        with open_dict(self.config):
            self.config.actor_rollout_ref.actor.optim.total_training_steps = self.total_training_steps

    def _add_prompts_to_generate(self, num_prompts: int) -> int:
        # The replay buffer calls this to replace failed rollout groups with fresh dataloader prompts, which
        # would put other prompts into a shard: fail the shard instead; a rerun regenerates it.
        raise ClearError(f"{num_prompts} rollout group(s) failed in the agent loop (e.g. a verifier that does not "
                         "load in a verifier worker); the AgentLoopWorker logs say why. Re-running resumes")

    # ------------------------------------------------------------------ layout
    @functools.cached_property
    def drift(self) -> DriftConfig:
        return DriftConfig.from_section(self.config.drift)

    @property
    def health(self) -> HealthConfig:
        return self.drift.health

    @property
    def mini_batch_size(self) -> int:
        """Trajectories per optimizer step: verl's ``ppo_mini_batch_size`` (prompts) x ``rollout.n``."""
        return self.config.actor_rollout_ref.actor.ppo_mini_batch_size * self.config.actor_rollout_ref.rollout.n

    @property
    def num_prompts(self) -> int:
        limit = self.drift.max_prompts
        return min(len(self.train_dataset), limit) if limit else len(self.train_dataset)

    def _steps_per_epoch(self) -> int:
        steps = self.num_prompts * self.config.actor_rollout_ref.rollout.n // self.mini_batch_size
        if steps == 0:
            raise ValueError(
                f"drift: {self.num_prompts} prompts x n={self.config.actor_rollout_ref.rollout.n} trajectories are "
                f"fewer than one mini-batch ({self.mini_batch_size}); lower actor.ppo_mini_batch_size"
            )
        return steps

    def _round_start(self, round_index: int) -> int:
        """Global step at which a round's weighted-SFT phase begins (rounds have equal step counts)."""
        return round_index * self._steps_per_epoch() * self.drift.epochs

    def _run_dir(self) -> Path:
        path = Path(self.config.trainer.default_local_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _store(self, round_index: int) -> TrajectoryStore:
        """The round's store, named by a fingerprint of everything that shapes its rollouts (not beta/gamma)."""
        if round_index == 0:
            reference = content_identity(self.config.actor_rollout_ref.model.path)
        else:  # the policy that ended the previous round, identified by its checkpoint
            reference = {"run": str(self._run_dir().resolve()), "step": self.global_steps}
        spec = rollout_spec(self.config, reference, round_index)
        return TrajectoryStore(self.drift.store_dir, spec, self.num_prompts, self.drift.prompts_per_shard)

    # ------------------------------------------------------------------ phase 1
    def _phase_rollouts(self, round_index: int) -> TrajectoryStore:
        """Missing shards, ``drift.shards_in_flight`` at a time: the next shard's prompts keep the rollout
        servers busy while the current shard's last trajectories finish; each shard is written once whole."""
        store = self._store(round_index)
        missing = store.missing_shards()
        round_start = self._round_start(round_index)
        if missing and self.global_steps != round_start:
            raise StoreError(
                f"{store.dir}: {len(missing)} shard(s) missing, but round {round_index} already trained up to step "
                f"{self.global_steps}, so its reference policy is no longer loaded. Restore the store, or restart "
                f"the round from checkpoint global_step_{round_start} (trainer.resume_from_path)."
            )
        if missing:
            self._replicas_current()  # the round's frozen reference: the policy as the round starts
        window = self.drift.shards_in_flight
        queue, submitted = list(missing), {}
        running, rows_of = {}, {}  # shard -> its prompts still generating / its rows so far
        shard_of = {index: shard for shard in missing for index in store.shard_prompts(shard)}
        start, trajectories, tokens = time.time(), 0, 0
        with tqdm(total=store.num_shards, initial=store.num_shards - len(missing),
                  desc=f"DRIFT round {round_index} phase 1: rollouts (shards)") as bar:
            while queue or running:
                while queue and len(running) < window:
                    shard = queue.pop(0)
                    prompts = store.shard_prompts(shard)
                    submitted.update(submit(self.train_dataset, prompts, self.agent_loop_manager, self.global_steps))
                    running[shard], rows_of[shard] = set(prompts), []
                # as many prompts as the oldest shard still waits for; they may come back from any running shard
                rows, new_tokens = collect(self.replay_buffer, submitted, len(running[next(iter(running))]),
                                           self.global_steps)
                tokens += new_tokens
                for row in rows:
                    shard = shard_of[row["index"]]
                    running[shard].discard(row["index"])
                    rows_of[shard].append(row)
                for shard in [s for s, prompts in running.items() if not prompts]:
                    del running[shard]
                    shard_rows = sorted(rows_of.pop(shard), key=lambda row: (row["index"], row["sample"]))
                    for row in shard_rows:
                        del row["index"]
                    store.write_shard(shard, shard_rows)  # store order: prompt, then sample
                    trajectories += len(shard_rows)
                    bar.update(1)
        wall = time.time() - start
        store.verify(int(self.config.actor_rollout_ref.rollout.n))  # never train on a damaged store
        stats = self._rollout_quality(store)
        stats.update(
            {
                "drift/rollout/wall_s": wall,
                "drift/rollout/new_trajectories": trajectories,
                "drift/rollout/reused_shards": store.num_shards - len(missing),
                "drift/rollout/trajectories_per_s": trajectories / wall if trajectories else 0.0,
                "drift/rollout/tokens_per_s": tokens / wall if trajectories else 0.0,
            }
        )
        self.logger.log(data=stats, step=self.global_steps)
        self.phase_times[f"round {round_index} phase 1 (rollouts)"] = wall
        print(f"[drift] trajectory store: {store.dir}")
        return store

    def _rollout_quality(self, store: TrajectoryStore) -> dict:
        """The reference policy's multi-turn metrics and the store's size (what generating it cost)."""
        rewards, answers, failures, generated, response = [], [], 0, 0, 0
        for table in store.iter_columns(["turn_rewards", "answers", "verifier_failures", "response_mask"]):
            columns = table.select(["turn_rewards", "answers", "verifier_failures"]).to_pydict()
            rewards += columns["turn_rewards"]
            answers += columns["answers"]
            failures += sum(columns["verifier_failures"])
            mask = table.column("response_mask")
            generated += pc.sum(pc.list_flatten(mask)).as_py() or 0
            response += pc.sum(pc.list_value_length(mask)).as_py() or 0
        metrics = multi_turn_metrics(rewards, answers, self.drift.env.max_turns)
        self.reference_metrics = metrics
        result = {f"drift/reference/{k}": v for k, v in metrics.items()}
        result.update({"drift/rollout/verifier_failures": failures, "drift/rollout/trajectories": len(rewards),
                       # assistant tokens; response tokens also count feedback, as verl's response_length does
                       "drift/rollout/generated_tokens": generated, "drift/rollout/response_tokens": response})
        return result

    # ------------------------------------------------------------------ phase 2
    def _phase_weights(self, store: TrajectoryStore, round_index: int) -> np.ndarray:
        start = time.time()
        config = WeightConfig(
            gamma=self.drift.gamma,
            beta=self.drift.beta,
            repetition_coef=self.drift.repetition_coef,
            normalization=self.drift.normalization,
            cap=self.drift.weight_cap,
            weighting=self.drift.weighting,
        )
        returns, prompt_ids, solved = returns_and_groups(store, config.gamma, config.repetition_coef)
        groups = group_codes(prompt_ids)
        weights = trajectory_weights(returns, groups, solved, config)
        stats = diagnostics(weights, groups, solved)
        stats["weights/return_mean"] = float(returns.mean())
        histogram = stats.pop("weights/histogram")
        png = plots.weight_plots(weights, groups, self._run_dir() / "plots" / f"round{round_index}_weights.png")
        plots.turn_plot(self.reference_metrics, self.drift.env.max_turns,
                        self._run_dir() / "plots" / f"round{round_index}_reference_by_turn.png")
        self.logger.log(data={f"drift/{k}": v for k, v in stats.items()}, step=self.global_steps)
        (self._run_dir() / "plots" / f"round{round_index}_weights.json").write_text(
            json.dumps({**stats, "histogram": histogram}, indent=2)
        )
        self.phase_times[f"round {round_index} phase 2 (weights)"] = time.time() - start
        print(f"[drift] weights: ESS fraction {stats['weights/ess_fraction_mean']:.3f}, max {stats['weights/max']:.2f}"
              f", degenerate groups {stats['weights/degenerate_group_share']:.2%}; plot {png}")
        return weights

    # ------------------------------------------------------------------ phase 3
    def _update(self, rows: list[dict], weights: np.ndarray) -> dict:
        data = self.config.data
        tensors = padded_batch(rows, weights, data.max_prompt_length, data.max_response_length,
                               self.tokenizer.pad_token_id, self.drift.train_turns)
        batch = left_right_2_no_padding(DataProto.from_dict(tensors=tensors).to_tensordict())
        size = len(rows)
        tu.assign_non_tensor(
            batch,
            calculate_entropy=False,
            distillation_use_topk=False,
            distillation_only=False,
            global_batch_size=size,
            mini_batch_size=size,
            epochs=1,
            seed=self.drift.seed,
            dataloader_kwargs={"shuffle": False},
            compute_loss=True,
            temperature=1.0,  # the NLL of the policy itself, whatever temperature the rollouts were sampled at
        )
        output = self.actor_rollout_wg.update_actor(batch)
        metrics = rename_dict(tu.get(output, "metrics"), "actor/")
        metrics["perf/mfu/actor"] = metrics.pop("actor/mfu")
        return reduce_metrics(metrics)

    def _phase_update(self, store: TrajectoryStore, weights: np.ndarray, round_index: int) -> None:
        start = time.time()
        steps_per_epoch = self._steps_per_epoch()
        round_start = self._round_start(round_index)
        sizes = store.shard_sizes()
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        cache: dict[int, list[dict]] = {}
        batch_size = self.mini_batch_size
        done_in_round = self.global_steps - round_start
        with tqdm(total=steps_per_epoch * self.drift.epochs, initial=done_in_round,
                  desc=f"DRIFT round {round_index} phase 3: weighted SFT (steps)") as bar:
            for epoch in range(done_in_round // steps_per_epoch, self.drift.epochs):
                order = epoch_order(sizes, epoch_seed(self.drift.seed, round_index, epoch))
                first = self.global_steps - round_start - epoch * steps_per_epoch
                for step in range(first, steps_per_epoch):
                    picks = order[step * batch_size:(step + 1) * batch_size]
                    needed = {s for s, _ in picks}
                    for shard in set(cache) - needed:  # the order visits shards one after another: done with it
                        del cache[shard]
                    for shard in needed - set(cache):
                        cache[shard] = store.read_shard(shard, TRAIN_COLUMNS).to_pylist()
                    rows = [cache[s][r] for s, r in picks]
                    step_start = time.time()
                    metrics = self._update(rows, weights[[offsets[s] + r for s, r in picks]])
                    self.global_steps += 1
                    metrics.update({"training/global_step": self.global_steps, "training/epoch": epoch,
                                    "drift/round": round_index, "drift/update/step_s": time.time() - step_start,
                                    "drift/update/batch_digest": batch_digest(picks)})
                    last = step == steps_per_epoch - 1 and epoch == self.drift.epochs - 1
                    self._after_step(metrics, last)
                    bar.update(1)
        self.phase_times[f"round {round_index} phase 3 (update)"] = time.time() - start

    def _after_step(self, metrics: dict, end_of_round: bool) -> None:
        # the step's own metrics first: they stay logged even if the checkpoint or the validation then dies
        self.logger.log(data=metrics, step=self.global_steps)
        trainer = self.config.trainer
        if end_of_round or (trainer.save_freq > 0 and self.global_steps % trainer.save_freq == 0):
            self._save_checkpoint()  # always at the end of a round: the next round's reference
        if end_of_round or (trainer.test_freq > 0 and self.global_steps % trainer.test_freq == 0):
            self.logger.log(data=self._validate_current(), step=self.global_steps)
            if not end_of_round:
                self._sleep_replicas()  # training goes on

    def _validate_current(self) -> dict:
        """verl's validation (multi-turn, same agent loop) on the current weights."""
        self._replicas_current()
        metrics = self._validate()
        self.validation_history.append((self.global_steps, metrics))
        return metrics

    # ------------------------------------------------------------------ driver
    def fit(self, agent_loop_manager):
        self.agent_loop_manager = agent_loop_manager
        self.logger = Tracking(
            project_name=self.config.trainer.project_name,
            experiment_name=self.config.trainer.experiment_name,
            default_backend=self.config.trainer.logger,
            config=OmegaConf.to_container(self.config, resolve=True),
        )
        # verl's validation logs trainer.log_val_generations samples through it
        self.validation_generations_logger = ValidationGenerationsLogger(
            project_name=self.config.trainer.project_name, experiment_name=self.config.trainer.experiment_name)
        self.phase_times: dict[str, float] = {}
        self.validation_history: list[tuple[int, dict]] = []
        self.reference_metrics: dict = {}
        store = None  # stays None when a resumed run had already finished every round
        if self.global_steps == 0 and self.config.trainer.get("val_before_train", True):
            self.logger.log(data=self._validate_current(), step=0)
        for round_index in range(self.global_steps // self._round_start(1), self.drift.rounds):
            store = self._phase_rollouts(round_index)
            self._sleep_replicas()
            weights = self._phase_weights(store, round_index)
            self._phase_update(store, weights, round_index)
        self._shutdown_dump_executor()
        self._summary(store)

    def _summary(self, store) -> None:
        lines = ["", "=" * 72, "DRIFT finished"]
        for name, seconds in self.phase_times.items():
            lines.append(f"  {name:<40s} {seconds:8.1f} s")
        if self.validation_history:
            (first_step, first), (last_step, last) = self.validation_history[0], self.validation_history[-1]
            before, after = validation_summary(first), validation_summary(last)
            for source, values in after.items():
                lines.append(f"  validation {source}: step {first_step} -> step {last_step}")
                shown = [n for n in values if n.startswith("solved_within_")] + ["non_repeat_ratio"]
                for name, value in ((n, values[n]) for n in shown if n in values):
                    lines.append(f"    {name:<24s} {before.get(source, {}).get(name, float('nan')):6.3f} -> {value:6.3f}")
        lines.append(f"  checkpoints: {self._run_dir().resolve()}")
        if store is not None:
            lines.append(f"  trajectory store: {store.dir.resolve()}")
        lines.append(f"  plots: {(self._run_dir() / 'plots').resolve()}")
        lines.append("=" * 72)
        print("\n".join(lines))

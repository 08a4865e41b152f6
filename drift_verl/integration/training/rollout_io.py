"""The DRIFT trainer's rollout side in verl: phase 1's traffic (prompts handed to verl's agent-loop workers,
finished trajectories taken back from TransferQueue through verl's replay buffer, set up for shards here, as
trajectory-store rows) and the rollout replicas' lifecycle (:class:`ReplicaLifecycle`).

The replicas on verl's lifecycle: verl's synchronous loop keeps the vLLM replicas asleep (weights and KV cache freed
on GPUs) while the actor trains and wakes them with the new weights through ``update_weights``, which expects them
asleep. DRIFT does the same around its phases: awake with the current policy for rollouts and validation only,
one weight sync per new policy. Every call into the replicas is bounded: a dead replica would make it wait forever.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import torch
import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.utils import tensordict_utils as tu
from verl.utils.dataset.rl_dataset import collate_fn

from drift_verl.core.errors import ClearError
from drift_verl.core.store import FEEDBACK_LOOP, fields_without_the_feedback_loop
from drift_verl.integration.job.health import Stalled, bounded

# rm_scores: every agent loop's reward (verl puts a loop's score on its last response token, drift_feedback each
# turn's on that turn's last token), computed in the agent-loop worker
FIELDS = ["uid", "prompts", "responses", "response_mask", "rm_scores", "extra_fields", "data_source", "reward_model"]
FROM_THE_LOOP = ["turn_spans", "turn_rewards", "answers", "format_penalty", "t_star", "verifier_failures", "messages",
                 "environment_failure"]


def _per_sample(value) -> list:
    """A TransferQueue field as one Python value per sample (nested/padded tensors -> token lists)."""
    if isinstance(value, torch.Tensor):
        return [t.tolist() for t in (value.unbind() if value.is_nested else value)]
    return list(value)


class ShardReplayBuffer(ReplayBuffer):
    """verl's synchronous replay buffer, polled every ``poll_interval`` (verl's 2 s would keep a shard of a few
    seconds waiting), that raises :class:`Stalled` when, while it waits for rollouts, no trajectory changes state
    (pending -> running -> finished/failed) for ``stall_timeout_s``: verl's own wait has no end."""

    def __init__(self, stall_timeout_s: float, poll_interval: float = 0.5, **verl_kwargs):
        super().__init__(poll_interval=poll_interval, **verl_kwargs)
        self.stall_timeout_s = stall_timeout_s
        self._last_change: tuple[float, tuple[int, ...] | None] = (time.monotonic(), None)

    def sample(self, *args, **kwargs):
        self._last_change = (time.monotonic(), None)
        return super().sample(*args, **kwargs)

    def _wait_for_next_poll(self, partition_id: str, last_debug_time: float) -> float:
        # verl 0.9.1: the one wait of ReplayBuffer.sample, between polls of TransferQueue, with no public hook.
        # tests/integration/test_health.py::test_replay_buffer_wait_ends_when_no_rollout_moves fails if it moves.
        state = tuple(len(keys[partition_id]) for keys in
                      (self.pending_keys, self.running_keys, self.finished_keys, self.failure_keys))
        since, last = self._last_change
        now = time.monotonic()
        if state != last:
            self._last_change = (now, state)
        elif now - since > self.stall_timeout_s:
            pending, running, finished, failed = state
            raise Stalled(f"no rollout finished for {now - since:.0f} s (TransferQueue partition {partition_id!r}: "
                          f"{pending} pending, {running} running, {finished} finished, {failed} failed) "
                          "(drift.health.rollout_stall_timeout_s)")
        return super()._wait_for_next_poll(partition_id, last_debug_time)


class PolledReplayBuffer(ReplayBuffer):
    """verl's synchronous replay buffer for GRPO, polling TransferQueue every
    ``trainer.v1.sampler.sampler_kwargs.poll_interval_s`` seconds: plugged in through verl's
    ``trainer.v1.sampler.custom_sampler``. verl polls every 2 s, so a GRPO step's ``timing_s/gen`` ends on the
    next 2 s tick after its last rollout (6.03, 8.03, 10.06 s on the embedded task): up to 2 s of waiting
    counted as generation, which DRIFT's shards (:class:`ShardReplayBuffer`, 0.5 s) do not pay. The rollout-heavy
    regime's GRPO polls as DRIFT does, so that the two pay for rollouts alike. verl gives a custom sampler no DAPO
    or refill settings: with neither enabled, verl's own buffer ignores them too."""

    def __init__(self, **verl_kwargs):
        if verl_kwargs.get("trainer_mode") != "sync":  # verl would put it where its async buffer belongs
            raise ClearError(f"trainer.v1.sampler.custom_sampler PolledReplayBuffer is a synchronous buffer; "
                             f"trainer.v1.trainer_mode={verl_kwargs.get('trainer_mode')} needs verl's own")
        poll = float((verl_kwargs.get("sampler_kwargs") or {}).get("poll_interval_s", 2.0))
        super().__init__(poll_interval=poll, **verl_kwargs)


class ShardRolloutBuffer:
    """Mixin for a verl v1 trainer (with a ``health`` config) whose rollouts fill store shards: its replay buffer
    (:class:`ShardReplayBuffer`), and no substitute prompts (verl replaces failed rollout groups with fresh ones,
    which would put other prompts into a shard: the shard fails instead; a rerun regenerates it)."""

    def _build_replay_buffer(self) -> ShardReplayBuffer:
        """verl's hook for the trainer's replay buffer, built with the arguments verl 0.9.1 gives a custom sampler
        (``trainer.v1.sampler.custom_sampler``), which are all a synchronous buffer without DAPO reads.
        ``tests/integration/test_health.py::test_shard_buffer_is_built_as_verl_builds_its_sync_buffer`` compares
        them with verl's own builder."""
        sampler = self.config.trainer.v1.sampler
        return ShardReplayBuffer(
            self.health.rollout_stall_timeout_s,
            trainer_mode=self.trainer_mode,
            trainer_config=self.config.trainer.v1.get(self.trainer_mode, {}),
            max_off_policy_threshold=sampler.max_off_policy_threshold,
            max_off_policy_strategy=sampler.max_off_policy_strategy,
            sampler_kwargs=sampler.sampler_kwargs,
            refill_fn=self._add_prompts_to_generate,
        )

    def _add_prompts_to_generate(self, num_prompts: int) -> int:
        raise ClearError(f"{num_prompts} rollout group(s) failed in the agent loop (e.g. a verifier that does not "
                         "load in a verifier worker); the AgentLoopWorker logs say why. Re-running resumes")


class VerlRollouts:
    """:class:`drift_verl.core.schedule.Rollouts` through verl: its agent-loop workers and TransferQueue."""

    def __init__(self, dataset, agent_loop_manager, replay_buffer, global_steps: int, agent_loop: str):
        """``agent_loop``: the store's (:attr:`drift_verl.core.store.TrajectoryStore.agent_loop`)."""
        self.dataset, self.agent_loop_manager, self.replay_buffer = dataset, agent_loop_manager, replay_buffer
        self.global_steps, self.agent_loop = global_steps, agent_loop
        self.submitted: dict[str, tuple[int, str]] = {}

    def submit(self, prompts: range) -> None:
        """Hand prompts to verl's agent-loop workers, which run their trajectories in the background and put them
        into TransferQueue; each uid is remembered with its (dataset index, prompt id)."""
        items = [self.dataset[i] for i in prompts]
        batch_dict = collate_fn(items)
        uids = [uuid.uuid4().hex for _ in prompts]
        batch_dict["uid"] = np.array(uids, dtype=object)
        batch = tu.get_tensordict(batch_dict)
        tu.assign_non_tensor_data(batch, "global_steps", self.global_steps)
        tags = [{"is_prompt": True, "status": "pending", "global_steps": self.global_steps} for _ in uids]
        tq.kv_batch_put(keys=uids, partition_id="train", tags=tags)
        self.agent_loop_manager.generate_sequences(batch)
        self.submitted.update({uid: (index, str((item.get("extra_info") or {}).get("prompt_id", index)))
                               for uid, index, item in zip(uids, prompts, items)})

    def collect(self, count: int) -> tuple[list[dict], int]:
        """Store rows of ``count`` finished prompts, whichever finished first (each row names its dataset
        ``index``), and the assistant tokens they hold."""
        meta, _ = self.replay_buffer.sample(global_steps=self.global_steps, partition_id="train", batch_size=count)
        data = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id, select_fields=FIELDS)
        tq.kv_clear(keys=meta.keys, partition_id=meta.partition_id)

        columns = {name: _per_sample(data[name]) for name in FIELDS}
        rows, samples, tokens = [], {}, 0
        for i, uid in enumerate(columns["uid"]):
            index, prompt_id = self.submitted[uid]
            extra = columns["extra_fields"][i]
            if ("turn_spans" in extra) != (self.agent_loop == FEEDBACK_LOOP):
                came_from = FEEDBACK_LOOP if "turn_spans" in extra else "another agent loop"
                raise ClearError(
                    f"a trajectory of prompt {prompt_id!r} came from {came_from}, the store's from {self.agent_loop}: "
                    "the training data names a loop per row (verl's agent_name column), and a store holds one "
                    "loop's trajectories. Drop the column, or make every row name "
                    "actor_rollout_ref.rollout.agent.default_agent_loop")
            tokens += sum(columns["response_mask"][i])
            rows.append({
                "index": index,
                "prompt_id": prompt_id,
                "sample": samples.setdefault(uid, 0),
                "data_source": str(columns["data_source"][i]),
                "ground_truth": str(columns["reward_model"][i]["ground_truth"]),
                "prompt_ids": columns["prompts"][i],
                "response_ids": columns["responses"][i],
                "response_mask": columns["response_mask"][i],
                **({key: extra[key] for key in FROM_THE_LOOP} if self.agent_loop == FEEDBACK_LOOP else
                   fields_without_the_feedback_loop(columns["response_mask"][i], columns["rm_scores"][i])),
            })
            samples[uid] += 1
        return rows, tokens


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

"""DRIFT's two schedules, pure arithmetic: which trajectories each optimizer step trains on (phase 3), and which
store shards are being rolled out at once (phase 1); where a resumed run goes on in each.

Phase 3 (:class:`Schedule`): every step trains whole prompt groups (all N trajectories of
``ppo_mini_batch_size`` prompts), as the paper's reference code does: DRIFT's weights are normalised per group, so
a step that saw part of a group would train on weights that do not average to one. Groups are shuffled within
windows of ``drift.shuffle_window`` shards, so the trainer holds a window of shards, never the whole store. From
the shard sizes, N, the window and a seed, a run killed at any step resumes at the next step with the very
mini-batches it would have had (``tests/e2e`` checks the logged :func:`batch_digest` per step), and
:func:`check_order` refuses a checkpoint whose steps were cut another way.

Phase 1 (:func:`fill_missing_shards`): the missing shards of a store, a few in flight, each written once whole.
The next shard's prompts keep the rollout servers busy while the current shard's last trajectories finish.
Trajectories come back in whatever order they finish, from any running shard; a shard is written (in store
order: prompt, then sample) as soon as all its prompts are back, so a killed run loses only unwritten shards.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from drift_verl.core import safe_io
from drift_verl.core.errors import ClearError
from drift_verl.core.store import TrajectoryStore

ORDER = "whole_groups"
ORDER_FILE = "drift_schedule.json"  # in each checkpoint folder: the order its steps were cut by
SETTINGS = {"shuffle_window": "drift.shuffle_window", "prompts_per_step": "actor_rollout_ref.actor.ppo_mini_batch_size",
            "samples_per_prompt": "actor_rollout_ref.rollout.n", "seed": "drift.seed"}


class ScheduleError(ClearError, ValueError):
    """A store or checkpoint that does not fit the schedule; the message names it and says what to do."""


def epoch_windows(shard_sizes: list[int], samples_per_prompt: int, window: int, seed: int
                  ) -> list[list[tuple[int, int]]]:
    """One epoch's (shard, group) order, window by window: the shards in random order, cut into windows of
    ``window`` shards, the groups of each window shuffled. A step mixes prompts of many shards, yet needs only
    the shards of the window(s) it falls in."""
    for shard, size in enumerate(shard_sizes):
        if size % samples_per_prompt:
            raise ScheduleError(f"shard {shard} (shard-{shard:05d}.parquet) holds {size} trajectories, not whole "
                                f"groups of N={samples_per_prompt}: a damaged or foreign store; roll it out again")
    rng = np.random.default_rng(seed)
    shards = [int(s) for s in rng.permutation(len(shard_sizes))]
    windows = []
    for start in range(0, len(shards), window):
        groups = [(s, g) for s in shards[start:start + window] for g in range(shard_sizes[s] // samples_per_prompt)]
        windows.append([groups[i] for i in rng.permutation(len(groups))])
    return windows


def epoch_seed(seed: int, round_index: int, epoch: int) -> int:
    return seed + 1000 * round_index + epoch


def batch_digest(picks: list[tuple[int, int]]) -> int:
    """A short fingerprint of one mini-batch's (shard, row) picks, logged per step."""
    return zlib.crc32(np.asarray(picks, dtype=np.int64).tobytes())


@dataclass(frozen=True)
class Position:
    """Where a run that has taken ``global_step`` steps stands: its round, the epoch within it, the step within
    that epoch (a finished run: ``round == rounds``)."""

    round: int
    epoch: int
    step: int


class Step(NamedTuple):
    """One optimizer step: its epoch, its (shard, row) picks (whole groups, each's N rows in sample order) and
    the shards of the windows it falls in (what the trainer keeps in memory for it)."""

    epoch: int
    picks: list[tuple[int, int]]
    shards: frozenset[int]


@dataclass(frozen=True)
class Schedule:
    """The whole run's steps: ``rounds`` rounds of ``epochs`` passes over the store, ``steps_per_epoch`` mini-batches
    of ``prompts_per_step`` whole groups of ``samples_per_prompt`` trajectories (a last partial mini-batch is left
    out, as verl does), groups shuffled within windows of ``window`` shards."""

    prompts_per_step: int
    samples_per_prompt: int
    window: int
    steps_per_epoch: int
    epochs: int
    rounds: int
    seed: int

    @classmethod
    def of(cls, prompts: int, prompts_per_step: int, samples_per_prompt: int, window: int, epochs: int, rounds: int,
           seed: int) -> Schedule:
        if prompts < prompts_per_step:
            raise ScheduleError(f"drift: {prompts} prompts are fewer than one mini-batch ({prompts_per_step}); lower "
                                "actor_rollout_ref.actor.ppo_mini_batch_size")
        return cls(prompts_per_step, samples_per_prompt, window, prompts // prompts_per_step, epochs, rounds, seed)

    @property
    def mini_batch(self) -> int:
        """Trajectories per optimizer step."""
        return self.prompts_per_step * self.samples_per_prompt

    @property
    def steps_per_round(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def total_steps(self) -> int:
        """The LR schedule's horizon."""
        return self.steps_per_round * self.rounds

    def round_start(self, round_index: int) -> int:
        """Global step at which a round's weighted-SFT phase begins."""
        return round_index * self.steps_per_round

    def position(self, global_step: int) -> Position:
        round_index, in_round = divmod(global_step, self.steps_per_round)
        epoch, step = divmod(in_round, self.steps_per_epoch)
        return Position(round_index, epoch, step)

    def identity(self) -> dict:
        """Everything that fixes which trajectories each step trains on (besides the store): saved with each
        checkpoint, compared on resume (:func:`check_order`)."""
        return {"order": ORDER, "shuffle_window": self.window, "prompts_per_step": self.prompts_per_step,
                "samples_per_prompt": self.samples_per_prompt, "seed": self.seed}

    def remaining_steps(self, shard_sizes: list[int], round_index: int, global_step: int) -> Iterator[Step]:
        """Each step of the round still to take after ``global_step`` steps: a resumed run goes on with the very
        mini-batches it would have had."""
        start = max(global_step, self.round_start(round_index))
        at = self.position(start)
        if at.round != round_index:
            return
        n, size = self.samples_per_prompt, self.prompts_per_step
        for epoch in range(at.epoch, self.epochs):
            windows = epoch_windows(shard_sizes, n, self.window, epoch_seed(self.seed, round_index, epoch))
            order = [(w, group) for w, groups in enumerate(windows) for group in groups]
            for step in range(at.step if epoch == at.epoch else 0, self.steps_per_epoch):
                chunk = order[step * size:(step + 1) * size]
                shards = frozenset(s for w in {w for w, _ in chunk} for s, _ in windows[w])
                yield Step(epoch, [(s, g * n + k) for _, (s, g) in chunk for k in range(n)], shards)


def write_order(folder: str | Path, schedule: Schedule) -> None:
    """Record in a checkpoint folder the order its steps were cut by."""
    safe_io.write_text(Path(folder) / ORDER_FILE, json.dumps(schedule.identity(), indent=2))


def check_order(folder: str | Path, schedule: Schedule) -> None:
    """Refuse to resume from a checkpoint whose steps were cut another way (no record: the old order, rows shuffled
    within shards): going on would train other mini-batches, some trajectories twice in the epoch, some never."""
    path, expected = Path(folder) / ORDER_FILE, schedule.identity()
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError:
        found = None
    except ValueError:
        found = "unreadable"
    if found == expected:
        return
    if found is None:
        what = f"it has no {ORDER_FILE}: it was written under the old mini-batch order (groups split across steps)"
        fix = "or resume it with the drift-verl version that wrote it"
    elif not isinstance(found, dict):
        what, fix = f"its {ORDER_FILE} is unreadable", "or restore that file"
    else:
        changed = [k for k in expected if found.get(k) != expected[k]]
        what = "its mini-batch order differs: " + ", ".join(
            f"{SETTINGS.get(k, k)} was {found.get(k)!r}, now {expected[k]!r}" for k in changed)
        fix = "or restore the previous setting" + ("s" if len(changed) > 1 else "")
    raise ScheduleError(f"{folder}: cannot resume from this checkpoint: {what}. Start afresh "
                        f"(trainer.resume_mode=disable, or another trainer.default_local_dir) {fix}")


# ------------------------------------------------------------------------------------------------ phase 1
class Rollouts(Protocol):
    def submit(self, prompts: range) -> None:
        """Start generating every trajectory of these prompts (dataset indices)."""

    def collect(self, count: int) -> tuple[list[dict], int]:
        """Block until ``count`` prompts are finished; their store rows (each with its dataset ``index``) and the
        assistant tokens they hold."""


def fill_missing_shards(store: TrajectoryStore, missing: list[int], window: int, rollouts: Rollouts,
                        on_written: Callable[[int], None] = lambda shard: None) -> tuple[int, int]:
    """Generate and write ``missing`` shards, ``window`` at a time. Returns (trajectories, assistant tokens)."""
    queue = list(missing)
    running: dict[int, set[int]] = {}  # shard -> its prompts still generating
    rows_of: dict[int, list[dict]] = {}
    shard_of = {index: shard for shard in missing for index in store.shard_prompts(shard)}
    trajectories = tokens = 0
    while queue or running:
        while queue and len(running) < window:
            shard = queue.pop(0)
            prompts = store.shard_prompts(shard)
            rollouts.submit(prompts)
            running[shard], rows_of[shard] = set(prompts), []
        # as many prompts as the oldest shard still waits for; they may come back from any running shard
        rows, new_tokens = rollouts.collect(len(running[next(iter(running))]))
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
            store.write_shard(shard, shard_rows)
            trajectories += len(shard_rows)
            on_written(shard)
    return trajectories, tokens

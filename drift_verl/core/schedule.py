"""The weighted-SFT schedule: which trajectories each optimizer step trains on, and where a resumed run goes on.

Pure arithmetic over the store's shard sizes and a seed, so a run killed at any step resumes at the next step
with the very mini-batches it would have had (``tests/e2e`` checks the logged :func:`batch_digest` per step).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


def epoch_order(shard_sizes: list[int], seed: int) -> list[tuple[int, int]]:
    """(shard, row) in training order: shards in random order, rows shuffled within each shard (one shard in
    memory at a time)."""
    rng = np.random.default_rng(seed)
    order = []
    for shard in rng.permutation(len(shard_sizes)):
        order += [(int(shard), int(row)) for row in rng.permutation(shard_sizes[shard])]
    return order


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


@dataclass(frozen=True)
class Schedule:
    """The whole run's steps: ``rounds`` rounds of ``epochs`` passes over the store, ``steps_per_epoch`` mini-batches
    of ``mini_batch`` trajectories each (a last partial mini-batch is left out, as verl does)."""

    mini_batch: int
    steps_per_epoch: int
    epochs: int
    rounds: int
    seed: int

    @classmethod
    def of(cls, trajectories: int, mini_batch: int, epochs: int, rounds: int, seed: int) -> Schedule:
        if trajectories < mini_batch:
            raise ValueError(f"drift: {trajectories} trajectories are fewer than one mini-batch ({mini_batch}); "
                             "lower actor.ppo_mini_batch_size")
        return cls(mini_batch, trajectories // mini_batch, epochs, rounds, seed)

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

    def remaining_steps(self, shard_sizes: list[int], round_index: int, global_step: int
                        ) -> Iterator[tuple[int, list[tuple[int, int]]]]:
        """(epoch, the mini-batch's (shard, row) picks) of each step of the round still to take after
        ``global_step`` steps: a resumed run goes on with the very mini-batches it would have had."""
        start = max(global_step, self.round_start(round_index))
        at = self.position(start)
        if at.round != round_index:
            return
        for epoch in range(at.epoch, self.epochs):
            order = epoch_order(shard_sizes, epoch_seed(self.seed, round_index, epoch))
            for step in range(at.step if epoch == at.epoch else 0, self.steps_per_epoch):
                yield epoch, order[step * self.mini_batch:(step + 1) * self.mini_batch]

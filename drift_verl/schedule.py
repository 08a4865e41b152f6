"""The weighted-SFT schedule: which trajectories each optimizer step trains on, and where a resumed run goes on.

Pure arithmetic over the store's shard sizes and a seed, so a run killed at any step resumes at the next step
with the very mini-batches it would have had (``tests/e2e`` checks the logged :func:`batch_digest` per step).
"""

from __future__ import annotations

import zlib

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

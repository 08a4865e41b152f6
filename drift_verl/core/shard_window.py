"""Phase 1's shard window: the missing shards of a store, a few in flight, each written once whole.

The next shard's prompts keep the rollout servers busy while the current shard's last trajectories finish.
Trajectories come back in whatever order they finish, from any running shard; a shard is written (in store
order: prompt, then sample) as soon as all its prompts are back, so a killed run loses only unwritten shards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from drift_verl.core.store import TrajectoryStore


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

"""Phase 1's shard window, in process: shards come back out of order and interleaved, and each is written once,
whole, in store order; a resumed run fills exactly the missing shards."""

import random

import pyarrow.parquet as pq

from drift_verl.core.schedule import fill_missing_shards
from drift_verl.core.store import TrajectoryStore
from tests.core.rows import store_row as _row

N = 3


class ShuffledRollouts:
    """Finishes submitted prompts in random order, whichever shard they belong to."""

    def __init__(self, seed: int, store: TrajectoryStore):
        self.rng, self.store = random.Random(seed), store
        self.pending: list[int] = []
        self.max_running_shards = 0

    def submit(self, prompts: range) -> None:
        self.pending += list(prompts)
        running = {index // self.store.prompts_per_shard for index in self.pending}
        self.max_running_shards = max(self.max_running_shards, len(running))

    def collect(self, count: int) -> tuple[list[dict], int]:
        self.rng.shuffle(self.pending)
        done, self.pending = self.pending[:count], self.pending[count:]
        rows = [{**_row(f"p{index}", sample, [0.0], ["1"]), "index": index}
                for index in done for sample in reversed(range(N))]
        return rows, 2 * len(rows)


def _stored(store):
    return [(row["prompt_id"], row["sample"]) for shard in range(store.num_shards)
            for row in pq.read_table(store.shard_path(shard)).to_pylist()]


def test_every_shard_written_once_whole_in_store_order(tmp_path):
    store = TrajectoryStore(tmp_path, {"n": N}, num_prompts=11, prompts_per_shard=4)
    rollouts, written = ShuffledRollouts(0, store), []
    trajectories, tokens = fill_missing_shards(store, store.missing_shards(), 2, rollouts, written.append)
    assert sorted(written) == [0, 1, 2] and trajectories == 11 * N and tokens == 2 * 11 * N
    assert rollouts.max_running_shards <= 2
    assert _stored(store) == [(f"p{i}", s) for i in range(11) for s in range(N)]


def test_a_resumed_run_fills_only_the_missing_shards(tmp_path):
    store = TrajectoryStore(tmp_path, {"n": N}, num_prompts=12, prompts_per_shard=4)
    fill_missing_shards(store, [0, 2], 2, ShuffledRollouts(1, store))
    before = {shard: store.shard_path(shard).read_bytes() for shard in (0, 2)}
    assert store.missing_shards() == [1]
    rollouts = ShuffledRollouts(2, store)
    fill_missing_shards(store, store.missing_shards(), 2, rollouts)
    assert rollouts.max_running_shards == 1
    assert all(store.shard_path(shard).read_bytes() == data for shard, data in before.items())
    assert _stored(store) == [(f"p{i}", s) for i in range(12) for s in range(N)]

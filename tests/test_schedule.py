"""The weighted-SFT schedule is a pure function of shard sizes and seed: a resumed run repeats it exactly."""

from drift_verl.schedule import batch_digest, epoch_order, epoch_seed


def test_epoch_order_visits_every_trajectory_once_shard_by_shard():
    sizes = [8, 3, 8, 5]
    order = epoch_order(sizes, seed=7)
    assert sorted(order) == [(s, r) for s, size in enumerate(sizes) for r in range(size)]
    shards = [s for s, _ in order]
    assert [s for i, s in enumerate(shards) if i == 0 or s != shards[i - 1]] == sorted(set(shards), key=shards.index)


def test_same_seed_same_batches_other_seed_other_batches():
    sizes = [16] * 8
    assert epoch_order(sizes, 3) == epoch_order(sizes, 3)
    assert epoch_order(sizes, 3) != epoch_order(sizes, 4)
    assert epoch_seed(0, 1, 2) != epoch_seed(0, 2, 1)


def test_batch_digest_is_stable_and_order_sensitive():
    picks = [(0, 1), (2, 3)]
    assert batch_digest(picks) == batch_digest(list(picks)) == 2432700938  # the same in every process and run
    assert batch_digest(picks) != batch_digest(picks[::-1])

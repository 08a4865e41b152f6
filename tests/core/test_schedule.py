"""The weighted-SFT schedule is a pure function of shard sizes and seed: a resumed run repeats it exactly."""

import pytest

from drift_verl.core.schedule import Position, Schedule, batch_digest, epoch_order, epoch_seed


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


def _whole_run(schedule, sizes):
    """Every step of every round as an uninterrupted run takes them."""
    return [picks for r in range(schedule.rounds) for _, picks in schedule.remaining_steps(sizes, r, schedule.round_start(r))]


def test_a_run_resumed_at_any_step_takes_the_very_steps_left():
    sizes = [16, 16, 16, 7]  # 55 trajectories: 6 mini-batches of 8 per epoch, 7 left out
    schedule = Schedule.of(sum(sizes), 8, epochs=3, rounds=2, seed=5)
    assert (schedule.steps_per_epoch, schedule.total_steps) == (6, 36)
    full = _whole_run(schedule, sizes)
    assert len(full) == schedule.total_steps
    for done in range(schedule.total_steps + 1):  # killed after `done` steps, then resumed
        at = schedule.position(done)
        resumed = [picks for r in range(at.round, schedule.rounds)
                   for _, picks in schedule.remaining_steps(sizes, r, done)]
        assert resumed == full[done:], done
    for epoch in range(3):  # within an epoch no trajectory is trained twice
        picked = [p for picks in full[epoch * 6:(epoch + 1) * 6] for p in picks]
        assert len(set(picked)) == len(picked) == 48


def test_positions_and_round_boundaries():
    schedule = Schedule.of(64, 16, epochs=2, rounds=3, seed=0)
    assert schedule.steps_per_round == 8 and schedule.round_start(2) == 16
    assert schedule.position(0) == Position(0, 0, 0)
    assert schedule.position(7) == Position(0, 1, 3)
    assert schedule.position(8) == Position(1, 0, 0)
    assert schedule.position(24).round == 3  # finished
    assert list(schedule.remaining_steps([64], 0, 8)) == []  # round 0 is done at step 8


def test_fewer_trajectories_than_a_mini_batch_is_an_error():
    with pytest.raises(ValueError, match="fewer than one mini-batch"):
        Schedule.of(12, 16, epochs=1, rounds=1, seed=0)

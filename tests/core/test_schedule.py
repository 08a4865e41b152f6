"""The weighted-SFT schedule is a pure function of shard sizes, N, window and seed: every step trains whole prompt
groups, a resumed run repeats it exactly, and a checkpoint cut another way is refused."""

import json

import pytest

from drift_verl.core.schedule import (ORDER_FILE, Position, Schedule, ScheduleError, batch_digest, check_order,
                                      epoch_seed, epoch_windows, write_order)

N = 4
SIZES = [16, 8, 16, 12, 16, 4]  # groups of N per shard: 4, 2, 4, 3, 4, 1 = 18


def _schedule(prompts_per_step=3, window=2, epochs=2, rounds=2, seed=5, sizes=SIZES):
    return Schedule.of(sum(sizes) // N, prompts_per_step, N, window, epochs, rounds, seed)


def _whole_run(schedule, sizes=SIZES):
    """Every step of every round as an uninterrupted run takes them."""
    return [step for r in range(schedule.rounds)
            for step in schedule.remaining_steps(sizes, r, schedule.round_start(r))]


def test_every_step_trains_whole_groups_in_sample_order():
    schedule = _schedule()
    assert (schedule.steps_per_epoch, schedule.mini_batch) == (6, 12)
    for step in _whole_run(schedule):
        assert len(step.picks) == schedule.mini_batch
        for i in range(0, len(step.picks), N):
            (shard, first), *rest = step.picks[i:i + N]
            assert first % N == 0 and step.picks[i:i + N] == [(shard, first + k) for k in range(N)]


def test_every_group_is_trained_once_per_epoch():
    schedule = _schedule(prompts_per_step=4)  # 18 groups: 4 steps of 4, the last 2 groups left out
    steps = _whole_run(schedule)
    assert len(steps) == schedule.total_steps == 4 * 2 * 2
    for e in range(schedule.epochs * schedule.rounds):
        picks = [p for step in steps[e * 4:(e + 1) * 4] for p in step.picks]
        assert len(set(picks)) == len(picks) == 16 * N
    groups = [g for window in epoch_windows(SIZES, N, 2, seed=7) for g in window]
    assert sorted(groups) == [(s, g) for s, size in enumerate(SIZES) for g in range(size // N)]


def test_windows_bound_the_shards_a_step_touches():
    windows = epoch_windows(SIZES, N, 2, seed=3)
    assert [len({s for s, _ in w}) for w in windows] == [2, 2, 2]  # 6 shards in windows of 2, disjoint
    assert len({s for w in windows for s, _ in w}) == 6
    of_shard = {s: i for i, w in enumerate(windows) for s, _ in w}
    schedule = _schedule(prompts_per_step=3, window=2, rounds=1, epochs=1, seed=3)
    straddles = 0
    for step in schedule.remaining_steps(SIZES, 0, 0):
        touched = {of_shard[s] for s, _ in step.picks}
        assert {s for s, _ in step.picks} <= step.shards
        assert step.shards == {s for s, w in of_shard.items() if w in touched}  # whole windows, no more
        assert len(touched) <= 2 and len(step.shards) <= 4
        straddles += len(touched) == 2
    assert straddles  # some step falls across two windows
    order = [of_shard[s] for step in schedule.remaining_steps(SIZES, 0, 0) for s, _ in step.picks]
    assert order == sorted(order)  # window after window


def test_a_run_resumed_at_any_step_takes_the_very_steps_left():
    sizes = [16, 16, 16, 8]  # 14 groups of 4: 4 mini-batches of 3 prompts per epoch, 2 groups left out
    schedule = Schedule.of(14, 3, N, 2, epochs=3, rounds=2, seed=5)
    assert (schedule.steps_per_epoch, schedule.total_steps) == (4, 24)
    full = _whole_run(schedule, sizes)
    assert len(full) == schedule.total_steps
    for done in range(schedule.total_steps + 1):  # killed after `done` steps, then resumed
        at = schedule.position(done)
        resumed = [step for r in range(at.round, schedule.rounds) for step in schedule.remaining_steps(sizes, r, done)]
        assert resumed == full[done:], done
        assert [batch_digest(s.picks) for s in resumed] == [batch_digest(s.picks) for s in full[done:]]
    for epoch in range(3):  # within an epoch no trajectory is trained twice
        picked = [p for step in full[epoch * 4:(epoch + 1) * 4] for p in step.picks]
        assert len(set(picked)) == len(picked) == 48


def test_same_seed_same_batches_other_seed_other_batches():
    assert _whole_run(_schedule(seed=3)) == _whole_run(_schedule(seed=3))
    assert [s.picks for s in _whole_run(_schedule(seed=3))] != [s.picks for s in _whole_run(_schedule(seed=4))]
    assert epoch_windows([16] * 8, N, 3, 3) != epoch_windows([16] * 8, N, 3, 4)
    assert epoch_seed(0, 1, 2) != epoch_seed(0, 2, 1)


def test_batch_digest_is_stable_and_order_sensitive():
    picks = [(0, 1), (2, 3)]
    assert batch_digest(picks) == batch_digest(list(picks)) == 2432700938  # the same in every process and run
    assert batch_digest(picks) != batch_digest(picks[::-1])


def test_positions_and_round_boundaries():
    schedule = Schedule.of(64, 16, 1, 64, epochs=2, rounds=3, seed=0)
    assert schedule.steps_per_round == 8 and schedule.round_start(2) == 16
    assert schedule.position(0) == Position(0, 0, 0)
    assert schedule.position(7) == Position(0, 1, 3)
    assert schedule.position(8) == Position(1, 0, 0)
    assert schedule.position(24).round == 3  # finished
    assert list(schedule.remaining_steps([64], 0, 8)) == []  # round 0 is done at step 8


def test_fewer_prompts_than_a_mini_batch_is_an_error():
    with pytest.raises(ValueError, match="fewer than one mini-batch"):
        Schedule.of(12, 16, N, 64, epochs=1, rounds=1, seed=0)


def test_a_shard_of_partial_groups_is_an_error_naming_it():
    with pytest.raises(ScheduleError, match=r"shard 1 \(shard-00001.parquet\) holds 10 trajectories, not whole "
                                            r"groups of N=4"):
        list(Schedule.of(5, 2, N, 2, 1, 1, 0).remaining_steps([8, 10, 8], 0, 0))


def test_a_checkpoint_with_the_same_order_resumes(tmp_path):
    write_order(tmp_path, _schedule())
    check_order(tmp_path, _schedule())
    assert json.loads((tmp_path / ORDER_FILE).read_text()) == {
        "order": "whole_groups", "shuffle_window": 2, "prompts_per_step": 3, "samples_per_prompt": N, "seed": 5}


def test_a_checkpoint_of_the_old_order_is_refused(tmp_path):
    folder = tmp_path / "global_step_6"
    folder.mkdir()
    with pytest.raises(ScheduleError, match=rf"^{folder}: cannot resume from this checkpoint: it has no "
                                            r"drift_schedule.json: it was written under the old mini-batch order"
                                            r".*\(trainer.resume_mode=disable, or another trainer.default_local_dir\)"):
        check_order(folder, _schedule())


@pytest.mark.parametrize("changed, message", [
    ({"window": 64}, r"drift.shuffle_window was 2, now 64"),
    ({"prompts_per_step": 2}, r"actor_rollout_ref.actor.ppo_mini_batch_size was 3, now 2"),
    ({"seed": 1, "window": 3}, r"drift.shuffle_window was 2, now 3, drift.seed was 5, now 1.* restore the previous "
                               r"settings"),
])
def test_a_checkpoint_of_another_order_is_refused_naming_what_differs(tmp_path, changed, message):
    write_order(tmp_path, _schedule())
    with pytest.raises(ScheduleError, match=rf"cannot resume from this checkpoint: its mini-batch order differs: "
                                            rf"{message}"):
        check_order(tmp_path, _schedule(**changed))
    (tmp_path / ORDER_FILE).write_text("{not json")
    with pytest.raises(ScheduleError, match="unreadable"):
        check_order(tmp_path, _schedule())

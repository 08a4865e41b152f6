"""Returns and weights: hand-computed cases, the reference format's semantics, the CLI and its errors."""

import json
import math

import numpy as np
import pytest

from drift_verl import weights as cli
from drift_verl.core import weights as W
from drift_verl.core.config import ConfigError
from drift_verl.core.weights import diagnostics, encode_answers, trajectory_returns, turn_contributions
from tests.core.rows import paper_return


def _return(rewards, penalty, answers, gamma=0.9, coef=0.5):
    """trajectory_returns of one row."""
    codes = np.array(encode_answers(answers), dtype=np.int64)
    (value,) = trajectory_returns(np.array(rewards, dtype=float), [len(rewards)], [penalty], codes, [len(codes)],
                                  gamma, coef)
    return value


def test_return_hand_computed():
    # solved at turn 3 with distinct answers: 0.9^2
    assert _return([0, 0, 1], 0.0, ["3", "4", "5"], gamma=0.9) == pytest.approx(0.81)
    # solved at turn 1
    assert _return([1], 0.0, ["7"], gamma=0.9) == pytest.approx(1.0)
    # five failures repeating one answer: 0.5 * (1 - 1/5) = 0.4
    assert _return([0] * 5, 0.0, ["3"] * 5) == pytest.approx(-0.4)
    # one unparsed turn (-0.1), then 4 answers, 2 distinct: -0.1 - 0.5 * (1 - 2/4)
    assert _return([0] * 5, -0.1, ["3", "3", "4", "4"]) == pytest.approx(-0.35)
    # no answer at all: only the format penalty
    assert _return([0, 0], -0.2, []) == pytest.approx(-0.2)
    assert _return([0, 1], 0.0, ["1", "2"], gamma=1.0) == pytest.approx(1.0)


def test_group_weights_hand_computed_and_mean_one():
    config = W.WeightConfig(beta=0.1)
    weights = W.group_weights(np.array([1.0, 0.0, 0.5, 0.5]), np.array([0, 0, 1, 1]), config)
    e = math.exp(10)
    assert weights[0] == pytest.approx(2 * e / (e + 1))
    assert weights[1] == pytest.approx(2 / (e + 1))
    assert weights[2:] == pytest.approx([1.0, 1.0])
    assert weights[:2].mean() == pytest.approx(1.0)


def test_group_weights_are_stable_for_extreme_returns():
    config = W.WeightConfig(beta=1e-3)
    weights = W.group_weights(np.array([1000.0, 999.0, -1000.0]), np.array([0, 0, 0]), config)
    assert np.all(np.isfinite(weights))
    assert weights.sum() == pytest.approx(3.0)
    assert weights[0] == pytest.approx(3.0)


def test_batch_normalisation_and_cap():
    returns, groups = np.array([1.0, 0.0, 0.0, 0.0]), np.array([0, 0, 1, 1])
    batch = W.group_weights(returns, groups, W.WeightConfig(beta=1.0, normalization="batch"))
    e = math.e
    assert batch == pytest.approx(4 * np.array([e, 1, 1, 1]) / (e + 3))
    capped = W.group_weights(returns, groups, W.WeightConfig(beta=0.1, cap=1.5))
    assert capped.max() == pytest.approx(1.5)


def test_store_normalisation_and_its_old_name_batch():
    """``store`` (one normaliser over the whole store) is what ``batch`` always meant: the alias maps to it."""
    returns, groups = np.array([1.0, 0.0, 0.0, 0.0]), np.array([0, 0, 1, 1])
    assert W.WeightConfig(normalization="batch").normalization == "store"
    store = W.group_weights(returns, groups, W.WeightConfig(beta=1.0, normalization="store"))
    assert store == pytest.approx(4 * np.array([math.e, 1, 1, 1]) / (math.e + 3))
    assert store.tolist() == W.group_weights(returns, groups, W.WeightConfig(beta=1.0, normalization="batch")).tolist()


# ---------------------------------------------------------------- one optimizer step's normaliser
def test_step_weights_modes():
    weights = np.array([2.0, 0.0, 1.0, 1.0, 0.5, 0.5])  # sum 5 over B = 6
    assert W.step_weights(weights, "mean").tolist() == weights.tolist()
    normed = W.step_weights(weights, "weight_sum")
    assert normed == pytest.approx(weights * 6 / 5)
    assert normed.sum() == pytest.approx(6)  # (1/B) sum w' L = sum w L / sum w
    zeros = np.zeros(4)  # rejection weighting, no success among the step's trajectories: nothing is trained
    for mode in W.LOSS_NORMALIZATIONS:
        assert W.step_weights(zeros, mode).tolist() == [0.0] * 4
    assert W.step_weights(np.zeros(0), "weight_sum").size == 0
    with pytest.raises(W.WeightInputError, match="loss normalization"):
        W.step_weights(weights, "sum")
    with pytest.raises(W.WeightInputError, match=">= 0"):
        W.step_weights(np.array([1.0, -1.0]), "weight_sum")


def _store_of_groups(num_groups=6, per_group=4, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(num_groups), per_group)
    solved = rng.random(groups.size) < 0.4
    returns = np.where(solved, 1.0, 0.0) + rng.normal(scale=0.2, size=groups.size)
    return returns, groups, solved


def test_uncapped_drift_weights_on_whole_groups_coincide():
    """Group-normalised weights average 1 per group, so a step of whole groups sums to B: both normalisers agree."""
    returns, groups, solved = _store_of_groups()
    for weighting in ("drift", "uniform"):
        weights = W.trajectory_weights(returns, groups, solved, W.WeightConfig(beta=0.1, weighting=weighting))
        for step in (groups < 2, (groups == 3) | (groups == 5), groups >= 0):  # whole groups, any of them
            assert W.step_weights(weights[step], "weight_sum") == pytest.approx(weights[step], rel=1e-12)


def test_rejection_and_capped_weights_differ_as_expected():
    returns, groups, solved = _store_of_groups()
    # rejection: kept / kept.mean() over the store. A step with fewer successes than the store's share gets its
    # successes' weights raised by weight_sum (every step the same size), a step with more gets them lowered.
    rejection = W.trajectory_weights(returns, groups, solved, W.WeightConfig(weighting="rejection"))
    share = solved.mean()  # 9/24; groups solved 3, 0, 1, 2, 1, 2 of 4
    steps = {"fewer": np.isin(groups, [2, 4]), "more": np.isin(groups, [0, 3]), "as many": groups < 2}
    for name, step in steps.items():
        mean, normed = W.step_weights(rejection[step], "mean"), W.step_weights(rejection[step], "weight_sum")
        kept = solved[step]
        assert mean[kept] == pytest.approx(1 / share)  # the same for every success, whatever the step
        assert normed[kept] == pytest.approx(kept.size / kept.sum())  # B / successes in this step
        assert normed.sum() == pytest.approx(kept.size)  # every step the same size
        assert mean[~kept].tolist() == normed[~kept].tolist() == [0.0] * int((~kept).sum())
        ratio = normed[kept] / mean[kept]
        assert {"fewer": ratio > 1, "more": ratio < 1, "as many": np.isclose(ratio, 1)}[name].all()
    no_success = groups == 1  # the all-zero step: zero weights, loss 0, in both modes
    assert W.step_weights(rejection[no_success], "weight_sum").tolist() == [0.0] * 4
    # a cap removes weight without renormalising: a step's sum falls below B, weight_sum scales it back to B
    capped = W.trajectory_weights(returns, groups, solved, W.WeightConfig(beta=0.05, cap=1.5))
    step = groups < 3
    assert capped[step].sum() < step.sum()
    normed = W.step_weights(capped[step], "weight_sum")
    assert normed == pytest.approx(capped[step] * step.sum() / capped[step].sum())
    assert (normed[capped[step] > 0] > capped[step][capped[step] > 0]).all()


def test_group_codes_follow_prompt_ids():
    codes = W.group_codes(["b", "a", "b", 3])
    assert codes[0] == codes[2] and len(set(codes.tolist())) == 3


def test_diagnostics():
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    weights = np.array([1, 1, 1, 1, 4, 0, 0, 0], dtype=float)
    stats = diagnostics(weights, groups, solved=np.array([0, 0, 0, 0, 1, 0, 0, 0]))
    assert stats["weights/ess_fraction_min"] == pytest.approx(0.25)
    assert stats["weights/ess_fraction_mean"] == pytest.approx((1 + 0.25) / 2)
    assert stats["weights/degenerate_group_share"] == pytest.approx(0.5)
    assert stats["weights/all_fail_group_share"] == pytest.approx(0.5)
    assert stats["weights/max"] == 4
    assert sum(stats["weights/histogram"]["counts"]) == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"beta": 0}, "beta"),
        ({"beta": -1}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"gamma": 0}, "gamma"),
        ({"gamma": 1.5}, "gamma"),
        ({"normalization": "global"}, "normalization"),
        ({"cap": 0}, "cap"),
        ({"partial_credit": 1}, "partial_credit"),
        ({"partial_credit": -0.1}, "partial_credit"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        W.WeightConfig(**kwargs)


def _reference_rows():
    # two prompts x 2 trajectories, in the reference implementation's format
    return [
        {"prompt_id": "p1", "turn_rewards": {"t1": 0, "t2": 1}, "answer_norms": ["4", "5"], "format_penalty": 0.0},
        {"prompt_id": "p1", "turn_rewards": {"t1": 0, "t2": 0, "t3": 0}, "answer_norms": ["4", "4", "4"],
         "format_penalty": 0.0},
        {"prompt_id": "p2", "turn_rewards": {"t1": 1}, "answer_norms": ["9"], "format_penalty": 0.0},
        {"prompt_id": "p2", "turn_rewards": {"t2": 0, "t1": 0, "t10": 1}, "answer_norms": [None, "1", "2"],
         "format_penalty": -0.1},
    ]


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_cli_on_reference_format(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, _reference_rows())
    assert cli.main([str(src), str(dst), "--gamma", "0.9", "--beta", "0.1"]) == 0
    out = [json.loads(line) for line in dst.read_text().splitlines()]
    r = [row["return"] for row in out]
    assert r[0] == pytest.approx(0.9)
    assert r[1] == pytest.approx(-0.5 * (1 - 1 / 3))
    assert r[2] == pytest.approx(1.0)
    # turns sorted numerically (t10 is the third turn): 0.9^2 - 0.1, answers 1 and 2 distinct
    assert r[3] == pytest.approx(0.81 - 0.1)
    w = [row["weight"] for row in out]
    assert w[0] + w[1] == pytest.approx(2) and w[2] + w[3] == pytest.approx(2)
    assert w[0] == pytest.approx(2 / (1 + math.exp((r[1] - r[0]) / 0.1)))
    assert out[0]["prompt_id"] == "p1" and out[0]["answer_norms"] == ["4", "5"]  # rows kept whole


def test_cli_store_normalisation_and_its_old_name(tmp_path):
    src = tmp_path / "in.jsonl"
    _write(src, _reference_rows())
    written = {}
    for name in ("store", "batch"):
        assert cli.main([str(src), str(tmp_path / f"{name}.jsonl"), "--normalization", name]) == 0
        written[name] = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    e = [math.exp(row["return"] / 0.1) for row in written["store"]]
    assert [row["weight"] for row in written["store"]] == pytest.approx([x * len(e) / sum(e) for x in e])
    assert written["store"] == written["batch"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda row: row.pop("turn_rewards"), "line 3|:3: missing field 'turn_rewards'"),
        (lambda row: row.update(prompt_id=""), ":3: field 'prompt_id' is empty"),
        (lambda row: row.update(turn_rewards={"t1": float("nan")}), ":3: field 'turn_rewards.t1'"),
        (lambda row: row.update(turn_rewards={"t1": "1"}), ":3: field 'turn_rewards.t1'"),
        (lambda row: row.update(format_penalty=float("inf")), ":3: field 'format_penalty'"),
        (lambda row: row.update(turn_rewards={"first": 1}), ":3: field 'turn_rewards' keys"),
        (lambda row: row.update(answer_norms="4"), ":3: field 'answer_norms'"),
    ],
)
def test_cli_errors_name_row_and_field(tmp_path, capsys, mutate, message):
    rows = _reference_rows()
    mutate(rows[2])
    src = tmp_path / "in.jsonl"
    _write(src, rows)
    assert cli.main([str(src), str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert any(part in err for part in message.split("|")), err
    assert str(src) in err


def test_cli_rejects_bad_beta_and_empty_input(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    _write(src, _reference_rows())
    assert cli.main([str(src), str(tmp_path / "o.jsonl"), "--beta", "0"]) == 2
    assert "beta" in capsys.readouterr().err
    src.write_text("")
    assert cli.main([str(src), str(tmp_path / "o.jsonl")]) == 2
    assert "no rows" in capsys.readouterr().err


# ---------------------------------------------------------------- vectorised pass == the paper's formula
def _random_trajectories(rng, num_prompts, per_prompt=4):
    """Random trajectories plus the edge cases: no answers, all-null answers, a single turn, zero reward,
    empty strings and one answer repeated."""
    vocabulary = ["", "0", "1", "7", "42", "-3", "x"]
    rows = []
    for prompt in range(num_prompts):
        for sample in range(per_prompt):
            turns = int(rng.integers(1, 6))
            rewards = [float(np.float32(r)) for r in rng.choice([0.0, 0.0, 1.0, 0.5, -0.25], size=turns)]
            answers = [None if rng.random() < 0.2 else str(rng.choice(vocabulary)) for _ in range(turns)]
            rows.append({"prompt_id": f"p{prompt % max(1, num_prompts - 2)}", "turn_rewards": rewards,
                         "answers": answers, "format_penalty": float(np.float32(-0.1 * answers.count(None)))})
    rows += [
        {"prompt_id": "edge", "turn_rewards": [0.0], "answers": [], "format_penalty": 0.0},
        {"prompt_id": "edge", "turn_rewards": [0.0, 0.0], "answers": [None, None], "format_penalty": -0.2},
        {"prompt_id": "edge", "turn_rewards": [1.0], "answers": ["5"], "format_penalty": 0.0},
        {"prompt_id": "edge", "turn_rewards": [], "answers": [], "format_penalty": 0.0},
        {"prompt_id": "edge2", "turn_rewards": [0.0] * 5, "answers": ["3"] * 5, "format_penalty": 0.0},
    ]
    for row in rows:  # stored as float32
        row["format_penalty"] = float(np.float32(row["format_penalty"]))
        row["t_star"] = next((i + 1 for i, r in enumerate(row["turn_rewards"]) if r >= 1), 0)
    return rows


def _reference_return(row, gamma, coef, kappa=0.0):
    return paper_return(row["turn_rewards"], row["format_penalty"], row["answers"], gamma, coef, kappa)


@pytest.mark.parametrize("gamma, coef, kappa", [(0.9, 0.5, 0.0), (1.0, 0.0, 0.0), (0.37, 2.0, 0.0), (0.9, 0.5, 0.5),
                                                (0.6, 1.0, 0.99)])
def test_vectorised_returns_equal_reference(gamma, coef, kappa):
    rows = _random_trajectories(np.random.default_rng(int(gamma * 100)), num_prompts=40)
    lengths = np.array([len(r["turn_rewards"]) for r in rows])
    rewards = np.array([x for r in rows for x in r["turn_rewards"]], dtype=np.float32)
    names = {a: i for i, a in enumerate({a for r in rows for a in r["answers"] if a is not None})}
    codes = np.array([-1 if a is None else names[a] for r in rows for a in r["answers"]], dtype=np.int64)
    answer_lengths = np.array([len(r["answers"]) for r in rows])
    penalty = np.array([r["format_penalty"] for r in rows], dtype=np.float32)
    got = trajectory_returns(rewards, lengths, penalty, codes, answer_lengths, gamma, coef, kappa)
    expected = [_reference_return(row, gamma, coef, kappa) for row in rows]
    assert got.tolist() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def _store_with(tmp_path, shards):
    from drift_verl.core.store import SCHEMA, TrajectoryStore

    store = TrajectoryStore(tmp_path, {"test": len(shards)}, num_prompts=len(shards), prompts_per_shard=1)
    filler = {"sample": 0, "data_source": "d", "ground_truth": "1", "prompt_ids": [], "response_ids": [],
              "response_mask": [], "turn_spans": [], "verifier_failures": 0, "messages": "[]"}
    for index, rows in enumerate(shards):
        store.write_shard(index, [{**filler, **row} for row in rows])
    assert set(SCHEMA.names) >= set(shards[0][0])
    return store


@pytest.mark.parametrize("batch_rows", [1, 7, 1 << 16])
def test_store_pass_equals_reference(tmp_path, monkeypatch, batch_rows):
    from drift_verl.core import store as S

    monkeypatch.setattr(S, "WEIGHT_BATCH_ROWS", batch_rows)  # batches of one shard, several, all shards
    rows = _random_trajectories(np.random.default_rng(batch_rows), num_prompts=30)
    shards = [rows[i:i + 13] for i in range(0, len(rows), 13)]  # prompt ids repeat across shards
    returns, groups, solved = S.returns_and_groups(_store_with(tmp_path, shards), 0.9, 0.5)
    assert returns.dtype == np.float64 and solved.dtype == bool
    assert returns.tolist() == pytest.approx([_reference_return(r, 0.9, 0.5) for r in rows], rel=1e-12, abs=1e-12)
    assert solved.tolist() == [r["t_star"] > 0 for r in rows]
    # the same grouping as the reference's string codes, dense, and kept as is by group_codes
    reference = W.group_codes([r["prompt_id"] for r in rows])
    pairs = set(zip(groups.tolist(), reference.tolist()))
    assert len(pairs) == len(set(groups.tolist())) == len(set(reference.tolist()))
    assert W.group_codes(groups) is groups or np.array_equal(W.group_codes(groups), groups)
    assert sorted(set(groups.tolist())) == list(range(len(pairs)))


def test_group_codes_on_integer_arrays():
    dense = np.array([0, 0, 2, 1, 1])
    assert W.group_codes(dense).tolist() == [0, 0, 2, 1, 1]
    sparse = W.group_codes(np.array([5, 5, 9, -1]))
    assert sparse[0] == sparse[1] and len(set(sparse.tolist())) == 3 and sparse.max() == 2


def test_vectorised_group_weights_equal_per_group_loop():
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 50, size=2000)
    returns = rng.normal(size=2000)
    config = W.WeightConfig(beta=0.3)
    weights = W.group_weights(returns, groups, config)
    for group in np.unique(groups):
        member = groups == group
        e = np.exp(returns[member] / config.beta)
        assert weights[member] == pytest.approx(e / e.mean(), rel=1e-10)


def test_baseline_weightings_on_the_same_trajectories():
    returns = np.array([1.0, 0.0, 0.9, -0.1])
    groups, solved = np.array([0, 0, 1, 1]), np.array([True, False, True, False])
    uniform = W.trajectory_weights(returns, groups, solved, W.WeightConfig(weighting="uniform"))
    assert uniform.tolist() == [1.0, 1.0, 1.0, 1.0]
    rejection = W.trajectory_weights(returns, groups, solved, W.WeightConfig(weighting="rejection"))
    assert rejection.tolist() == [2.0, 0.0, 2.0, 0.0]  # successes only, mean weight 1
    drift = W.trajectory_weights(returns, groups, solved, W.WeightConfig())
    np.testing.assert_allclose(drift, W.group_weights(returns, groups, W.WeightConfig()))
    with pytest.raises(ConfigError, match="weighting"):
        W.WeightConfig(weighting="greedy")


def test_cli_refuses_to_write_over_its_input(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    _write(src, _reference_rows())
    before = src.read_bytes()
    (tmp_path / "link.jsonl").symlink_to(src)
    for output in (src, tmp_path / "." / "in.jsonl", tmp_path / "link.jsonl"):
        assert cli.main([str(src), str(output)]) == 2
        assert "would overwrite the input" in capsys.readouterr().err
    assert src.read_bytes() == before


def test_cli_failing_midway_keeps_the_old_output(tmp_path, monkeypatch):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write(src, _reference_rows())
    dst.write_text("the previous output\n")
    monkeypatch.setattr(cli.json, "dumps", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    assert cli.main([str(src), str(dst)]) == 2
    assert dst.read_text() == "the previous output\n"
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_near_misses_count_once_and_never_beat_a_first_turn_success():
    """A graded verifier's partial credit (0 < r < 1): summed per turn, five near-misses at 0.8 would give
    R = 0.8 (1 + 0.9 + ... + 0.9^4) = 3.3, more than a first-turn success's 1. Counted once, kappa x the best."""
    def returns(rewards, answers, kappa):
        codes = np.array(encode_answers(answers), dtype=np.int64)
        return trajectory_returns(np.array(rewards), [len(rewards)], [0.0], codes, [len(codes)], 0.9, 0.5,
                                  kappa)[0]

    misses = (["5", "9", "6", "8", "4"], [0.8, 0.5, 0.8, 0.6, 0.7])
    assert returns(misses[1], misses[0], 0.5) == pytest.approx(0.4)  # best 0.8, at its first turn
    assert returns(misses[1], misses[0], 0.0) == 0.0
    for kappa in (0.0, 0.5, 0.99):
        assert returns([1.0], ["7"], kappa) == 1.0 > returns(misses[1], misses[0], kappa)
    # a solved trajectory gets no partial credit: its near-misses before the success count for nothing
    assert returns([0.8, 1.0], ["6", "7"], 0.5) == pytest.approx(0.9)
    # with kappa < gamma^(T-1), a success at the last turn still beats every near-miss
    assert returns([0.0, 0.0, 0.0, 0.0, 1.0], list("12347"), 0.6) > returns([0.99] * 5, list("12345"), 0.6)
    # per-turn shares: the credit sits on the turn of the best near-miss, and they still sum to R
    shares = turn_contributions(misses[1], misses[0], 0.9, 0.5, 0.5)
    assert shares == pytest.approx([0.4, 0, 0, 0, 0]) and sum(shares) == pytest.approx(0.4)

"""Returns and weights: hand-computed cases, the reference format's semantics, the CLI and its errors."""

import json
import math

import numpy as np
import pytest

from drift_verl import weights as W


def test_return_hand_computed():
    # solved at turn 3 with distinct answers: 0.9^2
    assert W.trajectory_return([0, 0, 1], 0.0, ["3", "4", "5"], gamma=0.9) == pytest.approx(0.81)
    # solved at turn 1
    assert W.trajectory_return([1], 0.0, ["7"], gamma=0.9) == pytest.approx(1.0)
    # five failures repeating one answer: 0.5 * (1 - 1/5) = 0.4
    assert W.trajectory_return([0] * 5, 0.0, ["3"] * 5) == pytest.approx(-0.4)
    # one unparsed turn (-0.1), then 4 answers, 2 distinct: -0.1 - 0.5 * (1 - 2/4)
    assert W.trajectory_return([0] * 5, -0.1, ["3", "3", "4", "4"]) == pytest.approx(-0.35)
    # no answer at all: only the format penalty
    assert W.trajectory_return([0, 0], -0.2, []) == pytest.approx(-0.2)
    assert W.trajectory_return([0, 1], 0.0, ["1", "2"], gamma=1.0) == pytest.approx(1.0)


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


def test_group_codes_follow_prompt_ids():
    codes = W.group_codes(["b", "a", "b", 3])
    assert codes[0] == codes[2] and len(set(codes.tolist())) == 3


def test_diagnostics():
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    weights = np.array([1, 1, 1, 1, 4, 0, 0, 0], dtype=float)
    stats = W.diagnostics(weights, groups, solved=np.array([0, 0, 0, 0, 1, 0, 0, 0]))
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
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(W.WeightInputError, match=message):
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
    assert W.main([str(src), str(dst), "--gamma", "0.9", "--beta", "0.1"]) == 0
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
    assert W.main([str(src), str(tmp_path / "out.jsonl")]) == 2
    err = capsys.readouterr().err
    assert any(part in err for part in message.split("|")), err
    assert str(src) in err


def test_cli_rejects_bad_beta_and_empty_input(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    _write(src, _reference_rows())
    assert W.main([str(src), str(tmp_path / "o.jsonl"), "--beta", "0"]) == 2
    assert "beta" in capsys.readouterr().err
    src.write_text("")
    assert W.main([str(src), str(tmp_path / "o.jsonl")]) == 2
    assert "no rows" in capsys.readouterr().err

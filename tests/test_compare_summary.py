"""scripts/compare.py's summary: the exact schema of docs/comparison/summary.json and DRIFT-vs-GRPO cost arithmetic,
on synthetic runs (the comparison itself takes hours; its numbers are in docs/comparison/)."""

import importlib.util

import pytest

from tests.conftest import REPO

spec = importlib.util.spec_from_file_location("compare", REPO / "scripts" / "compare.py")
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)

METHODS = ("reference", "sft_uniform", "sft_rejection", "grpo", "grpo_turn", "drift")


def _row(solved5: float, wall: float = 0.0, tokens: float = 0.0, step: int | None = None) -> dict:
    row = {**{f"solved_within_{k}": solved5 * k / 5 for k in range(1, 6)}, "non_repeat": 0.7,
           "step0_solved_within_5": 0.5, "wall_s": wall, "rollout_tokens": tokens}
    return row if step is None else {"step": step, **row}


def _curve(points: list[tuple[float, float]]) -> list[dict]:
    """(solved5, wall) per validation point every 8 steps; 100 tokens per second of wall."""
    return [_row(s, w, 100 * w, step=8 * i) for i, (s, w) in enumerate(points)]


def test_summary_has_the_exact_schema_and_the_cost_ratio_of_reaching_the_best_grpo():
    grpo = [_curve([(0.5, 0), (0.55, 100), (0.60, 200)]), _curve([(0.5, 0), (0.57, 100), (0.62, 200)])]
    turn = [_curve([(0.5, 0), (0.52, 100), (0.56, 200)])] * 2
    rows = {"reference": [_row(0.5)] * 2, "sft_uniform": [_row(0.45, 30, 900)] * 2,
            "sft_rejection": [_row(0.52, 30, 900)] * 2, "grpo": [c[-1] for c in grpo],
            "grpo_turn": [c[-1] for c in turn], "drift": [_row(0.62, 40, 1000), _row(0.60, 50, 1000)]}
    curves = {"grpo": compare.mean_curve(grpo), "grpo_turn": compare.mean_curve(turn)}
    summary = compare.summary(rows, [0, 1], curves)
    assert set(summary) == {"validation_prompts", "samples_per_prompt", "seeds", "methods", "drift_vs_grpo"}
    assert (summary["validation_prompts"], summary["samples_per_prompt"], summary["seeds"]) == (128, 16, [0, 1])
    assert set(summary["methods"]) == set(METHODS)
    for stats in summary["methods"].values():
        assert set(stats) == set(compare.SUMMARY_METRICS)
        assert all(set(value) == {"mean", "std"} for value in stats.values())
    assert summary["methods"]["drift"]["wall_s"] == {"mean": 45.0, "std": 5.0}
    # best GRPO variant: grpo, mean final 0.61, first reached at its mean curve's last point (200 s, 20000 tokens)
    ratio = summary["drift_vs_grpo"]
    assert set(ratio) == {"target_solved_within_5", "wall_ratio", "token_ratio"}
    assert ratio["target_solved_within_5"] == pytest.approx(0.61)
    assert ratio["wall_ratio"] == pytest.approx(45 / 200) and ratio["token_ratio"] == pytest.approx(1000 / 20000)


def test_no_ratio_when_drift_does_not_reach_the_target():
    grpo = [_curve([(0.5, 0), (0.7, 100)])]
    rows = {"grpo": [grpo[0][-1]], "drift": [_row(0.6, 40, 1000)]}
    result = compare.drift_vs_grpo(rows, {"grpo": compare.mean_curve(grpo)})
    assert result["wall_ratio"] is None and result["token_ratio"] is None
    assert result["target_solved_within_5"] == pytest.approx(0.7)

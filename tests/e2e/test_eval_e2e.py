"""``python -m drift_verl.eval`` end to end on the tiny model: verl validation-only, vLLM, the feedback loop."""

import json

import pandas as pd
import pytest

from tests.conftest import SMALL_TASK, run_job, tail

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TURNS, PROMPTS = 3, 8


def _benchmarks(workdir) -> tuple[str, str]:
    """A math benchmark (tiny dev prompts) and a multiple-choice one built from other tiny dev prompts."""
    from drift_verl.tiny import assets

    val = pd.read_parquet(assets.tiny_dev())
    math = val.iloc[:PROMPTS]
    choice = []
    for i, row in enumerate(val.iloc[PROMPTS:2 * PROMPTS].to_dict("records")):
        gold = int(row["reward_model"]["ground_truth"])
        options = [gold + d for d in (-1, 0, 1, 2)]
        options = options[i % 4:] + options[:i % 4]
        listed = " ".join(f"({letter}) {value}" for letter, value in zip("ABCD", options))
        system, user = (dict(message) for message in row["prompt"])
        user["content"] += f" {listed}"
        choice.append({**row, "data_source": "tiny_choice", "ability": "choice", "prompt": [system, user],
                       "reward_model": {"style": "rule", "ground_truth": "ABCD"[options.index(gold)]}})
    paths = str(workdir / "math.parquet"), str(workdir / "choice.parquet")
    math.to_parquet(paths[0])
    pd.DataFrame(choice).to_parquet(paths[1])
    return paths


def test_eval_two_benchmarks_json_markdown_plot(tmp_path):
    math, choice = _benchmarks(tmp_path)
    proc, _ = run_job(
        [
            "-m", "drift_verl.eval", "platform=cpu",
            f"eval.benchmarks=[{math},{choice}]", f"eval.output_dir={tmp_path / 'out'}",
            f"drift.env.max_turns={TURNS}", SMALL_TASK[0],
        ],
        tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, tail(proc)
    out = tmp_path / "out"
    report = json.loads((out / "eval.json").read_text())
    assert report["max_turns"] == TURNS and report["sampling"]["mode"] == "greedy"
    benches = report["benchmarks"]
    assert {name: b["kind"] for name, b in benches.items()} == {"drift_tiny_add": "math", "tiny_choice": "choice"}
    for bench in benches.values():
        m = bench["metrics"]
        assert bench["prompts"] == bench["trajectories"] == PROMPTS  # greedy: one trajectory per prompt
        within = [m[f"solved_within_{k}"] for k in range(1, TURNS + 1)]
        assert within == sorted(within)  # multi@k is nondecreasing in k
        assert sum(m[f"acc_at_turn_{k}"] for k in range(1, TURNS + 1)) == pytest.approx(within[-1])
        assert 1 <= m["mean_turns"] <= TURNS and 0 <= m["format_failure_rate"] <= 1
        assert 0 <= m["non_repeat_ratio"] <= 1
        assert m["verifier_failures"] == 0  # every turn scored by its verifier (by_source routes in capped workers)
    # the per-trajectory dump the metrics come from: verl's own validation, through the feedback loop
    (dump,) = (out / "generations").glob("*.jsonl")
    rows = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(rows) == 2 * PROMPTS
    for row in rows:  # verl's score is the feedback loop's return; acc = solved within T
        assert row["acc"] == row[f"solved_within_{TURNS}"] == float(row["solved_turn"] > 0)
        assert 1 <= row["assistant_turns"] <= TURNS
        if row["solved_turn"]:  # the loop stops at the first correct answer
            assert row["assistant_turns"] == row["solved_turn"]
    md = (out / "eval.md").read_text()
    assert "## Math benchmarks" in md and "## Multiple-choice benchmarks" in md
    assert "### drift_tiny_add" in md and "### tiny_choice" in md
    assert "## Multiple-choice benchmarks" in proc.stdout  # the report is printed at the end
    assert (out / "accuracy_by_turn.png").read_bytes()[:4] == b"\x89PNG"

"""The comparison protocol (scripts/compare.py, drift_verl/eval/protocol.py) on small results shaped as its runs
record them (tests/fixtures/comparison/: the metric names verl and drift-verl log, compact, by step; written by
hand, not taken from a run): costs, the choice on dev, the confidence intervals and their pairing, the
summary.json schema, the weight health, resuming, and the dry run. The protocol itself takes hours; its numbers
are in docs/comparison/."""

import argparse
import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from drift_verl.core import stats
from drift_verl.eval import protocol
from tests.conftest import FIXTURES, REPO, load_compare

compare = load_compare()

RECORDED = FIXTURES / "comparison"
SOLVED5 = "val-aux/drift_tiny_add/solved_within_5/mean@16"
SPLIT = {"train_problems": 256, "dev_problems": 256, "test_problems": 256}


def recorded(name: str) -> dict:
    return json.loads((RECORDED / f"{name}.json").read_text())


STORE = recorded("store")
BASES = {"offline": recorded("dev-drift-lr0.002-p32-e1-b0.1"),
         "rounds": recorded("dev-drift_rounds-lr0.002-p32-e1-r2-b0.1"), "grpo_dev": recorded("dev-grpo-lr0.001-p16"),
         "grpo_test": recorded("test-grpo-lr0.001-p16-s8-seed0")}


def variant(base: dict, method: str, phase: str, seed: int, settings: dict, scores: dict[int, float]) -> dict:
    """A recorded result as another run: its method, settings, seed, and solved-within-5 at the given steps."""
    result = copy.deepcopy(base)
    result.update(method=method, phase=phase, seed=seed, settings=settings,
                  name=f"{phase}-{method}-{compare.slug(settings)}-seed{seed}")
    for step, value in scores.items():
        result["metrics"][str(step)][SOLVED5] = value
    return result


def study(test_scores: dict[str, list[float]] | None = None, uniform_p: int = 16):
    """Dev results (2 grid points per method) and test results (3 seeds) of every method, from the recordings."""
    offline = [{"lr": 2e-3, "prompts_per_step": 32, "epochs": 1},
               {"lr": 4e-3, "prompts_per_step": uniform_p, "epochs": 2}]
    grids = {"sft_uniform": offline, "sft_rejection": offline, "drift": [{**p, "beta": 0.1} for p in offline],
             "drift_rounds": [{"lr": 2e-3, "prompts_per_step": 32, "epochs": 1, "rounds": 2, "beta": 0.1},
                              {"lr": 4e-3, "prompts_per_step": 32, "epochs": 1, "rounds": 3, "beta": 0.1}],
             "grpo": [{"lr": 1e-3, "prompts_per_step": 16}, {"lr": 2e-3, "prompts_per_step": 16}],
             "grpo_turn": [{"lr": 1e-3, "prompts_per_step": 16}, {"lr": 2e-3, "prompts_per_step": 16}]}
    dev_scores = {"sft_uniform": [0.61, 0.63], "sft_rejection": [0.66, 0.64], "drift": [0.67, 0.65],
                  "drift_rounds": [0.69, 0.68], "grpo": [0.66, 0.70], "grpo_turn": [0.69, 0.68]}
    dev = {}
    for method, points in grids.items():
        dev[method] = []
        for settings, score in zip(points, dev_scores[method]):
            if method in protocol.GRPO:  # validated at steps 8 and 16: step 8 is the better one
                scores = {8: score, 16: score - 0.01}
                dev[method].append(variant(BASES["grpo_dev"], method, "dev", 100, settings, scores))
            else:
                base, last = (BASES["rounds"], 16) if method == "drift_rounds" else (BASES["offline"], 8)
                dev[method].append(variant(base, method, "dev", 100, settings, {last: score}))
    chosen = {m: protocol.choose(entries)["settings"] for m, entries in protocol.tuning(dev, STORE).items()}
    test_scores = test_scores or {"sft_uniform": [0.60, 0.62, 0.61], "sft_rejection": [0.65, 0.66, 0.64],
                                  "drift": [0.68, 0.69, 0.66], "drift_rounds": [0.70, 0.69, 0.71],
                                  "grpo": [0.72, 0.70, 0.71], "grpo_turn": [0.69, 0.70, 0.68]}
    test = {}
    for method, scores in test_scores.items():
        base, last = {"drift_rounds": (BASES["rounds"], 16), "grpo": (BASES["grpo_test"], 8),
                      "grpo_turn": (BASES["grpo_test"], 8)}.get(method, (BASES["offline"], 8))
        test[method] = [variant(base, method, "test", seed, chosen[method], {last: s}) for seed, s in enumerate(scores)]
    return dev, test, chosen


HEALTH = {"ess_fraction": 0.5, "all_fail_group_share": 0.27, "lone_success_share": 0.1, "max_weight": 7.9,
          "step_weight_sum_per_row": {}}


# ------------------------------------------------------------------------------------------------ reading results
def test_compact_keeps_validation_means_costs_and_timings_only():
    raw = {0: {"val-core/drift_tiny_add/acc/mean@16": 0.6, "val-core/drift_tiny_add/acc/best@16/mean": 0.9,
               "val-aux/drift_tiny_add/solved_within_1/std@16": 0.1, "val-aux/num_turns/mean": 3.0,
               "drift/rollout/wall_s": 5.0, "drift/weights/max": 7.0, "actor/loss": 1.2},
           3: {"timing_s/step": 4.0, "timing_s/gen": 3.0, "response_length/mean": 50.0, "actor/grad_norm": 1.0,
               "drift/update/step_s": 1.0, "drift/update/batch_digest": 123, "training/global_step": 3}}
    assert protocol.compact(raw) == {
        "0": {"val-core/drift_tiny_add/acc/mean@16": 0.6, "drift/rollout/wall_s": 5.0, "drift/weights/max": 7.0},
        "3": {"timing_s/step": 4.0, "timing_s/gen": 3.0, "response_length/mean": 50.0, "drift/update/step_s": 1.0}}


def test_costs_of_recorded_runs_exclude_start_up_and_validation():
    updates = {int(s): m.get("drift/update/step_s", 0.0) for s, m in BASES["rounds"]["metrics"].items()}
    assert protocol.store_cost(STORE) == {"wall_s": 51.37, "rollout_tokens": 117676}
    offline = protocol.points(BASES["offline"], STORE)
    assert [p["step"] for p in offline] == [0, 8]
    assert offline[-1]["wall_s"] == pytest.approx(51.37 + sum(
        m["drift/update/step_s"] for s, m in BASES["offline"]["metrics"].items() if int(s) > 0))
    assert offline[-1]["rollout_tokens"] == 117676
    # iterative DRIFT: round 1's rollouts (logged at step 8, the end of round 0) count after step 8, not at it
    end0, end1 = protocol.points(BASES["rounds"], STORE)
    assert end0["wall_s"] == pytest.approx(51.37 + sum(updates[s] for s in range(1, 9)))
    assert end0["rollout_tokens"] == 117676
    assert end1["wall_s"] == pytest.approx(51.37 + 47.9 + sum(updates[s] for s in range(1, 17)))
    assert end1["rollout_tokens"] == 117676 + 101240
    # GRPO: its steps' wall-clock without the checkpoint save, response tokens x 16 prompts x 8
    steps = [m for s, m in BASES["grpo_test"]["metrics"].items() if int(s) > 0]
    last = protocol.points(BASES["grpo_test"], None)[-1]
    assert last["step"] == 8 and last["wall_s"] == pytest.approx(sum(m["timing_s/step"] for m in steps) - 0.85)
    assert last["rollout_tokens"] == pytest.approx(sum(m["response_length/mean"] for m in steps) * 16 * 8)
    assert protocol.grpo_rollout_share([BASES["grpo_test"]]) == pytest.approx(
        sum(m["timing_s/gen"] for m in steps) / last["wall_s"])


# ------------------------------------------------------------------------------------------------ choice on dev
def test_grpo_step_is_the_best_validated_step_after_training():
    entry = protocol.tuning_entry(BASES["grpo_dev"], None)
    assert entry["settings"] == {"lr": 0.001, "prompts_per_step": 16, "steps": 8}
    assert entry["dev_solved_within_5"] == pytest.approx(0.68) and [s for s, _ in entry["dev_curve"]] == [8, 16]
    later = variant(BASES["grpo_dev"], "grpo", "dev", 100, {"lr": 0.001, "prompts_per_step": 16}, {16: 0.70})
    assert protocol.tuning_entry(later, None)["settings"]["steps"] == 16
    tie = variant(BASES["grpo_dev"], "grpo", "dev", 100, {"lr": 0.001, "prompts_per_step": 16}, {8: 0.7, 16: 0.7})
    assert protocol.tuning_entry(tie, None)["settings"]["steps"] == 8  # the earliest among equals
    with_step0 = copy.deepcopy(BASES["grpo_dev"])
    with_step0["metrics"]["0"] = {**BASES["grpo_test"]["metrics"]["0"], SOLVED5: 0.99}
    assert protocol.tuning_entry(with_step0, None)["settings"]["steps"] == 8  # the reference is not a choice


def test_choice_is_the_best_dev_score_and_the_first_among_equals():
    dev, _, chosen = study()
    assert chosen["sft_uniform"] == {"lr": 4e-3, "prompts_per_step": 16, "epochs": 2}
    assert chosen["drift"] == {"lr": 2e-3, "prompts_per_step": 32, "epochs": 1, "beta": 0.1}
    assert chosen["drift_rounds"]["rounds"] == 2
    assert chosen["grpo"] == {"lr": 2e-3, "prompts_per_step": 16, "steps": 8}
    entries = [{"settings": {"a": 1}, "dev_solved_within_5": 0.6}, {"settings": {"a": 2}, "dev_solved_within_5": 0.6}]
    assert protocol.choose(entries)["settings"] == {"a": 1}
    best = {m: protocol.choose(e) for m, e in protocol.tuning(dev, STORE).items()}
    assert protocol.best_grpo(best) == "grpo"  # 0.70 against grpo_turn's 0.69
    best["grpo_turn"] = {**best["grpo_turn"], "dev_solved_within_5": 0.70}
    assert protocol.best_grpo(best) == "grpo"  # equal: grpo


def test_tuning_cost_is_the_whole_dev_grid_with_the_store_once():
    dev, _, _ = study()
    store = protocol.store_cost(STORE)
    updates = sum(m.get("drift/update/step_s", 0.0) for r in dev["drift"] for m in r["metrics"].values())
    assert protocol.tuning_cost("drift", dev["drift"], STORE) == pytest.approx(
        {"wall_s": store["wall_s"] + updates, "rollout_tokens": store["rollout_tokens"]})
    rounds = protocol.tuning_cost("drift_rounds", dev["drift_rounds"], STORE)
    assert rounds["rollout_tokens"] == pytest.approx(store["rollout_tokens"] + 2 * 101240)
    grpo = protocol.tuning_cost("grpo", dev["grpo"], STORE)
    steps = [m for r in dev["grpo"] for s, m in r["metrics"].items() if int(s) > 0]
    assert grpo["wall_s"] == pytest.approx(sum(m["timing_s/step"] for m in steps))  # every step, no store
    assert grpo["rollout_tokens"] == pytest.approx(sum(m["response_length/mean"] for m in steps) * 16 * 8)


# ------------------------------------------------------------------------------------------------ statistics
def test_verdict_words_follow_the_interval():
    assert protocol.verdict([0.01, 0.05]) == "better"
    assert protocol.verdict([-0.05, -0.001]) == "worse"
    assert protocol.verdict([-0.01, 0.05]) == protocol.verdict(None) == "no difference measurable at this n"
    rows = lambda values: [{"seed": s, "solved_within_5": v} for s, v in enumerate(values)]  # noqa: E731
    paired = protocol.difference(rows([0.66, 0.70, 0.61, 0.68, 0.64]), rows([0.65, 0.66, 0.62, 0.64, 0.66]), True)
    assert paired == {"mean": pytest.approx(0.012), "ci95": pytest.approx([-0.02245, 0.04645], abs=1e-5),
                      "verdict": "no difference measurable at this n", "paired": True, "n": 5}
    welch = protocol.difference(rows([0.70, 0.72, 0.68, 0.71, 0.69]), rows([0.60, 0.66, 0.63, 0.58, 0.65]), False)
    assert (welch["verdict"], welch["paired"], welch["n"]) == ("better", False, 5)


def test_pairing_only_where_the_seed_fixes_the_same_steps():
    dev, test, chosen = study()
    full = protocol.report(dev, test, STORE, SPLIT, HEALTH)
    differences = full["differences"]
    # drift and rejection SFT chose 32 prompts x 1 epoch on the same store: the same whole groups per step per seed
    assert differences["drift_minus_sft_rejection"]["paired"] is True
    assert differences["drift_minus_sft_uniform"]["paired"] is False  # unweighted SFT chose 16 prompts per step
    assert differences["drift_minus_best_grpo"]["paired"] is False
    assert differences["drift_minus_best_grpo"]["methods"] == ["drift", "grpo"]
    assert differences["drift_rounds_minus_best_grpo"]["paired"] is False
    expected = stats.paired_ci([0.68, 0.69, 0.66], [0.65, 0.66, 0.64])
    assert differences["drift_minus_sft_rejection"]["mean"] == pytest.approx(expected[0])
    assert differences["drift_minus_sft_rejection"]["ci95"] == pytest.approx(expected[1])
    # the same order for unweighted SFT too: paired
    dev, test, _ = study(uniform_p=32)
    dev["sft_uniform"][0]["metrics"]["8"][SOLVED5] = 0.9
    full = protocol.report(*_refresh(dev, test), STORE, SPLIT, HEALTH)
    assert full["differences"]["drift_minus_sft_uniform"]["paired"] is True


def _refresh(dev, test):
    """Test results moved to the (re)chosen settings."""
    chosen = {m: protocol.choose(e)["settings"] for m, e in protocol.tuning(dev, STORE).items()}
    return dev, {m: [{**r, "settings": chosen[m]} for r in runs] for m, runs in test.items()}


def test_results_of_another_store_or_of_unchosen_settings_are_refused():
    dev, test, _ = study()
    test["sft_rejection"][1]["store"] = {"folder": "other", "sha256": "0" * 64}
    with pytest.raises(protocol.ProtocolError, match="another trajectory store.*test-sft_rejection"):
        protocol.report(dev, test, STORE, SPLIT, HEALTH)
    dev, test, _ = study()
    test["grpo"][0]["settings"] = {"lr": 1e-3, "prompts_per_step": 16, "steps": 8}
    with pytest.raises(protocol.ProtocolError, match="not chosen on dev"):
        protocol.report(dev, test, STORE, SPLIT, HEALTH)


# ------------------------------------------------------------------------------------------------ summary.json
def test_summary_has_the_exact_schema():
    dev, test, chosen = study()
    full = protocol.report(dev, test, STORE, SPLIT, HEALTH)
    summary = json.loads(json.dumps(protocol.summary(full)))  # what summary.json holds
    assert set(summary) == {"validation_prompts", "samples_per_prompt", "seeds", "methods", "drift_vs_grpo", "split",
                            "tuning", "chosen", "tuning_cost", "differences", "frontier", "grpo_rollout_share",
                            "weight_health", "timing"}
    assert (summary["validation_prompts"], summary["samples_per_prompt"], summary["seeds"]) == (256, 16, [0, 1, 2])
    assert summary["split"] == SPLIT
    assert set(summary["methods"]) == {"reference", *protocol.METHODS}
    for stats in summary["methods"].values():
        assert set(stats) == set(protocol.SUMMARY_METRICS)
        assert all(set(value) == {"mean", "std"} for value in stats.values())
    assert summary["methods"]["drift"]["solved_within_5"]["mean"] == pytest.approx(np.mean([0.68, 0.69, 0.66]))
    assert summary["methods"]["drift"]["solved_within_5"]["std"] == pytest.approx(np.std([0.68, 0.69, 0.66], ddof=1))
    drift_wall = [p["wall_s"] for r in test["drift"] for p in protocol.points(r, STORE)[-1:]]
    assert summary["methods"]["drift"]["wall_s"] == pytest.approx({"mean": np.mean(drift_wall), "std": 0.0})
    assert summary["methods"]["reference"]["rollout_tokens"] == {"mean": 0.0, "std": 0.0}
    methods = summary["methods"]
    assert methods["sft_uniform"]["step0_solved_within_5"] == methods["reference"]["solved_within_5"]
    assert set(summary["drift_vs_grpo"]) == {"target_solved_within_5", "wall_ratio", "wall_ratio_at_most",
                                             "token_ratio"}
    assert set(summary["tuning"]) == set(protocol.METHODS) == set(summary["chosen"]) == set(summary["tuning_cost"])
    for method, entries in summary["tuning"].items():
        assert len(entries) == 2 and all(set(e) == {"settings", "dev_solved_within_5"} for e in entries)
        assert summary["chosen"][method] in [e["settings"] for e in entries]
        assert set(summary["tuning_cost"][method]) == {"rollout_tokens", "wall_s"}
    assert set(summary["differences"]) == set(protocol.DIFFERENCES)
    for d in summary["differences"].values():
        assert set(d) == {"mean", "ci95", "verdict", "paired", "n"} and len(d["ci95"]) == 2 and d["n"] == 3
    assert set(summary["frontier"]) == {"reference", *protocol.METHODS}
    assert [len(summary["frontier"][m]) for m in ("drift", "drift_rounds", "grpo")] == [1, 2, 4]  # rounds; 2,4,6,8
    assert all(set(p) == {"rollout_tokens", "wall_s", "solved_within_5"}
               for curve in summary["frontier"].values() for p in curve)
    assert 0 < summary["grpo_rollout_share"] < 1
    assert summary["weight_health"] == HEALTH


def test_wall_clock_comes_from_runs_that_had_the_machine_alone_and_scores_from_every_run():
    dev, test, _ = study()
    for seed in (0, 1):  # two of DRIFT's three test seeds shared the cores: their clock ran slow
        test["drift"][seed]["machine_shared"] = "ran beside another job"
        for values in test["drift"][seed]["metrics"].values():
            if "drift/update/step_s" in values:
                values["drift/update/step_s"] *= 2
        test["drift"][seed]["job_wall_s"] *= 2
    dev["grpo"][1]["machine_shared"] = "ran beside another job"
    full = protocol.report(dev, test, STORE, SPLIT, HEALTH)
    summary = protocol.summary(full)
    alone = protocol.points(test["drift"][2], STORE)[-1]
    assert summary["methods"]["drift"]["wall_s"] == {"mean": pytest.approx(alone["wall_s"]), "std": 0.0}
    assert summary["methods"]["drift"]["solved_within_5"]["mean"] == pytest.approx(np.mean([0.68, 0.69, 0.66]))
    assert summary["frontier"]["drift"][0]["wall_s"] == pytest.approx(alone["wall_s"])
    assert summary["timing"]["test"]["drift"] == {"wall_clock_seeds": [2], "every_run_shared_the_machine": False}
    assert summary["timing"]["dev_machine_shared"] == [dev["grpo"][1]["name"]]
    line = compare.timing_line(full["timing"])
    assert "drift: 2;" in line and "1 dev runs that shared the machine" in line and "inflated" not in line

    test["drift"][2]["machine_shared"] = "ran beside another job"  # none alone: all of them, said so
    full = protocol.report(dev, test, STORE, SPLIT, HEALTH)
    assert full["timing"]["test"]["drift"] == {"wall_clock_seeds": [0, 1, 2], "every_run_shared_the_machine": True}
    assert "Every run of drift shared the machine" in compare.timing_line(full["timing"])


def test_drift_vs_grpo_is_the_cost_ratio_of_reaching_the_grpo_mean():
    curve = [{"step": 8 * i, "solved_within_5": s, "wall_s": 100.0 * i, "rollout_tokens": 1e4 * i}
             for i, s in enumerate([0.55, 0.58, 0.61])]
    rows = {"grpo": [{"solved_within_5": 0.60}, {"solved_within_5": 0.62}],
            "drift": [{"solved_within_5": 0.62, "wall_s": 40.0, "rollout_tokens": 1000.0},
                      {"solved_within_5": 0.60, "wall_s": 50.0, "rollout_tokens": 1000.0}]}
    ratio = protocol.drift_vs_grpo(rows, {"grpo": curve}, "grpo", poll_s=2.0)
    assert ratio["target_solved_within_5"] == pytest.approx(0.61)
    assert ratio["wall_ratio"] == pytest.approx(45 / 200) and ratio["token_ratio"] == pytest.approx(1000 / 20000)
    # had GRPO never waited on its 2 s poll: its 16 steps to the target cost at least 200 - 32 s
    assert ratio["wall_ratio_at_most"] == pytest.approx(45 / (200 - 2.0 * 16))
    rows["drift"] = [{"solved_within_5": 0.6, "wall_s": 40.0, "rollout_tokens": 1000.0}]
    ratio = protocol.drift_vs_grpo(rows, {"grpo": curve}, "grpo")
    assert ratio["wall_ratio"] is None and ratio["token_ratio"] is None


def test_report_writes_tables_and_the_frontier_plot(tmp_path):
    dev, test, _ = study()
    full = {**protocol.report(dev, test, STORE, SPLIT, None), "command": "python scripts/compare.py",
            "non_repeat": None}
    full["weight_health"] = {**HEALTH, "settings": full["chosen"]["drift"], "store": STORE["store"],
                             "step_weight_sum_per_row": {
                                 "old_order": {"rows_per_step": 32, "steps": 64, "min": 0.2, "p5": 0.4, "median": 0.9,
                                               "p95": 2.1, "max": 3.0},
                                 "whole_groups": {"rows_per_step": 256, "steps": 8, "min": 1.0, "p5": 1.0,
                                                  "median": 1.0, "p95": 1.0, "max": 1.0}}}
    text = compare.markdown(full)
    assert "| drift − sft_rejection | +0.027 |" in text and "| paired | 3 |" in text
    assert text.count("| chosen |") == len(protocol.METHODS) and "| old order | 32 | 0.20 |" in text
    compare.plot_frontier(full, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ weight health
def _store(tmp_path, solved_per_group: list[int]):
    """A store of len(groups) prompts x 8 in 16-prompt shards; group g has its first solved_per_group[g] solved."""
    from drift_verl.core.store import TrajectoryStore

    store = TrajectoryStore(tmp_path / "stores", {"test": "weight health"}, len(solved_per_group), 16)
    for shard in range(store.num_shards):
        rows = []
        for prompt in store.shard_prompts(shard):
            for sample in range(8):
                ok = sample < solved_per_group[prompt]
                rows.append({"prompt_id": f"p{prompt}", "sample": sample, "data_source": "t", "ground_truth": "3",
                             "prompt_ids": [1], "response_ids": [2], "response_mask": [1], "turn_spans": [[0, 1]],
                             "turn_rewards": [1.0 if ok else 0.0], "answers": ["3" if ok else "4"],
                             "format_penalty": 0.0, "t_star": 1 if ok else 0, "verifier_failures": 0, "messages": "[]"})
        store.write_shard(shard, rows)
    return store


def test_weight_health_of_a_store(tmp_path):
    solved = [0, 1, 1, 3, 8, 0, 2, 1] * 4  # 32 prompts: 8 all-fail, 12 with one success
    store = _store(tmp_path, solved)
    health = compare.weight_health(store.dir, {"beta": 0.1, "prompts_per_step": 4, "epochs": 2})
    assert health["all_fail_group_share"] == pytest.approx(8 / 32)
    assert health["lone_success_share"] == pytest.approx(12 / 32)
    assert 0 < health["ess_fraction"] < 1 and health["max_weight"] == pytest.approx(8, rel=1e-3)
    whole, old = health["step_weight_sum_per_row"]["whole_groups"], health["step_weight_sum_per_row"]["old_order"]
    # group weights average one, so whole-group steps sum to their rows; parts of groups need not
    assert (whole["rows_per_step"], whole["steps"]) == (32, 16)
    assert whole["min"] == pytest.approx(1) and whole["max"] == pytest.approx(1)
    assert (old["rows_per_step"], old["steps"]) == (32, 16) and old["max"] - old["min"] > 0.5


def test_old_order_visits_each_row_once_per_epoch_in_32_row_steps():
    steps = protocol.old_order_steps([128, 128, 72], [5, 6])
    assert all(len(s) == 32 for s in steps) and len(steps) == 2 * (328 // 32)
    first_epoch = [row for s in steps[:10] for row in s]
    assert len(set(first_epoch)) == 320 and set(first_epoch) <= set(range(328))
    assert steps[:10] != steps[10:]


# ------------------------------------------------------------------------------------------------ the runner
def test_dry_run_lists_every_grid_point_and_seed_and_runs_no_job(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(compare, "run_job", lambda *a, **k: pytest.fail("a job was started"))
    assert compare.main(["--dry-run", "--out", str(tmp_path / "out"), "--workdir", str(tmp_path / "work")]) == 0
    assert capsys.readouterr().out.count("[todo]") == 56
    done = subprocess.run([sys.executable, "scripts/compare.py", "--dry-run", "--out", str(tmp_path / "out"),
                           "--workdir", str(tmp_path / "work")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("  [todo]")]
    for method in protocol.METHODS:
        assert sum(1 for line in lines if line[1] == method and "seed" not in line) == 4
        assert [line[3] for line in lines if line[1] == method and line[2] == "seed"] == ["0", "1", "2", "3", "4"]
    assert "estimated: 56 jobs (25 dev + 31 test)" in done.stdout
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()


def test_finished_runs_are_not_run_again_and_another_command_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "run_job", lambda *a, **k: pytest.fail("a job was started"))
    args = argparse.Namespace(runs=tmp_path, workdir=tmp_path / "work")
    run = compare.store_run()
    (tmp_path / "store.json").write_text(json.dumps({**STORE, "argv": run.argv}))
    assert compare.execute(args, run, None)["store"] == STORE["store"]
    (tmp_path / "store.json").write_text(json.dumps({**STORE, "argv": [*run.argv, "drift.seed=1"]}))
    with pytest.raises(protocol.ProtocolError, match="another command.*drift.seed=1"):
        compare.execute(args, run, None)


def test_test_and_report_phases_wait_for_the_dev_phase(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare, "run_job", lambda *a, **k: pytest.fail("a job was started"))
    for phase in ("test", "report"):
        assert compare.main(["--phase", phase, "--out", str(tmp_path), "--workdir", str(tmp_path / "w")]) == 2
        assert "the dev phase is not finished" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # fewer than 5 test seeds only with --smoke
        compare.main(["--seeds", "3", "--dry-run", "--out", str(tmp_path)])


def test_an_unfinished_run_starts_afresh_with_its_own_later_round_stores(tmp_path):
    args = argparse.Namespace(runs=tmp_path / "runs", workdir=tmp_path / "work")
    run = compare.Run("dev-drift_rounds-x", "dev", "drift_rounds", 100, {}, "dev", 16, [])
    checkpoints = (args.workdir / run.name / "checkpoints").resolve()
    for folder, reference in (("shared", "sha256:abc"), ("round1", {"run": str(checkpoints), "step": 8}),
                              ("other", {"run": str(tmp_path / "elsewhere"), "step": 8})):
        (args.workdir / "stores" / folder).mkdir(parents=True)
        (args.workdir / "stores" / folder / "manifest.json").write_text(json.dumps({"spec": {"reference": reference}}))
    checkpoints.mkdir(parents=True)
    compare.forget_attempt(args, run)
    assert sorted(p.name for p in (args.workdir / "stores").iterdir()) == ["other", "shared"]
    assert not (args.workdir / run.name).exists()


def test_the_test_runs_train_on_the_test_store_kept_beside_the_results(tmp_path):
    """The test phase's store is copied from where the results keep it when the work folder lacks it, and refused
    when its files changed; the test results are checked against it, the dev results against the dev store."""
    args = argparse.Namespace(runs=tmp_path / "out" / "runs", out=tmp_path / "out", workdir=tmp_path / "work")
    kept = tmp_path / "out" / "test-store" / "abc"
    kept.mkdir(parents=True)
    (kept / "manifest.json").write_text("{}")
    test_store = {**STORE, "name": "test-store", "phase": "test", "store": compare.store_identity(kept)}
    assert compare.verified_store(args, test_store) == tmp_path / "work" / "test-stores" / "abc"
    (tmp_path / "work" / "test-stores" / "abc" / "manifest.json").write_text('{"changed": 1}')
    with pytest.raises(protocol.ProtocolError, match="not the store the recorded results trained on"):
        compare.verified_store(args, test_store)
    main = compare.REGIMES["main"]
    main_args = argparse.Namespace(seeds=1, regime=main, plan=main.plan, test_samples=16)
    runs = {run.method: run for run in compare.test_runs(main_args, "abc", study()[2])}
    assert "drift.store={workdir}/test-stores/abc" in runs["drift"].argv
    assert "drift.store_dir={workdir}/test-stores" in runs["drift_rounds"].argv
    dev, test, _ = study()
    with pytest.raises(protocol.ProtocolError, match="another trajectory store than abc"):
        protocol.report(dev, test, STORE, SPLIT, HEALTH, test_store)  # test results made on the dev store
    for runs in test.values():
        for result in runs:
            result["store"] = test_store["store"]
    full = protocol.report(dev, test, STORE, SPLIT, HEALTH, test_store)
    assert full["test_store"] == test_store["store"] and full["store"] == STORE["store"]


def test_grpo_test_runs_without_step_0_take_the_reference_from_drifts_run_of_their_seed():
    """A GRPO test run validates halfway and at its step only: its step-0 score (the reference's) is the step-0
    validation of the DRIFT run with the same seed, and its curve starts there."""
    dev, test, _ = study()
    for method in protocol.GRPO:
        for result in test[method]:
            del result["metrics"]["0"]
    full = protocol.report(dev, test, STORE, SPLIT, HEALTH)
    for method in protocol.GRPO:
        references = {r["seed"]: r["solved_within_5"] for r in full["rows"]["reference"]}
        assert [r["step0_solved_within_5"] for r in full["rows"][method]] == [references[r["seed"]]
                                                                             for r in full["rows"][method]]
    assert full["frontier"]["grpo"][-1]["solved_within_5"] == pytest.approx(0.71)


def test_a_seed_0_test_result_is_measured_once_and_never_trained_again_for_it(tmp_path, monkeypatch):
    """The non-repeat measure is taken from a finished seed-0 test run's checkpoint and kept in its result; a result
    without it, whose checkpoint is gone, names the file to delete instead of training again."""
    monkeypatch.setattr(compare, "run_job", lambda *a, **k: pytest.fail("a job was started"))
    args = argparse.Namespace(runs=tmp_path, workdir=tmp_path / "work", skip_non_repeat=False, out=tmp_path,
                              regime=compare.REGIMES["main"])
    run = compare.Run("test-drift-x-seed0", "test", "drift", 0, {}, "test", 16, ["-m", "drift_verl.main"])
    (tmp_path / f"{run.name}.json").write_text(json.dumps({"name": run.name, "argv": run.argv}))
    with pytest.raises(protocol.ProtocolError, match="test-drift-x-seed0.json: no non-repeat measurement"):
        compare.execute(args, run, None)
    weights = tmp_path / "work" / run.name / "checkpoints" / "global_step_8" / "actor" / "huggingface"
    weights.mkdir(parents=True)
    monkeypatch.setattr(compare, "verified_store", lambda *a: tmp_path / "store")
    monkeypatch.setattr(compare, "non_repeat_of", lambda model, store: {"model": str(model), "non_repeat": 0.7})
    assert compare.execute(args, run, None)["non_repeat"] == {"model": str(weights), "non_repeat": 0.7}
    assert json.loads((tmp_path / f"{run.name}.json").read_text())["non_repeat"]["non_repeat"] == 0.7


# ------------------------------------------------------------------------------------------------ regimes
def write_main_dev(out, best: str = "grpo_turn") -> None:
    """The main protocol's finished dev phase as its runs record it (the planned commands, the recordings'
    metrics): ``best`` is the better GRPO variant on dev."""
    main = compare.finish(compare.parser().parse_args(["--out", str(out)]))
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "store.json").write_text(json.dumps({**STORE, "name": "store", "phase": "dev",
                                                         "argv": compare.store_run().argv}))
    for index, run in enumerate(compare.dev_runs(main, STORE["store"]["folder"])[1:]):
        if run.method in protocol.GRPO:
            score = 0.70 + 0.001 * index + (0.05 if run.method == best else 0.0)
            result = variant(BASES["grpo_dev"], run.method, "dev", 100, run.settings, {8: score, 16: score - 0.01})
        else:
            base, last = (BASES["rounds"], 16) if run.method == "drift_rounds" else (BASES["offline"], 8)
            result = variant(base, run.method, "dev", 100, run.settings, {last: 0.6 + 0.001 * index})
        result.update(name=run.name, argv=run.argv)
        (out / "runs" / f"{run.name}.json").write_text(json.dumps(result))


def test_the_recorded_comparison_still_matches_the_planned_commands(capsys):
    """docs/comparison's results were made by the commands the main protocol plans today: a change to the plan
    that altered them would make the test phase refuse (or rerun) finished runs."""
    assert compare.main(["--dry-run", "--out", str(REPO / "docs" / "comparison"),
                         "--main-out", str(REPO / "docs" / "comparison")]) == 0
    out = capsys.readouterr().out
    assert out.count("[done]") >= 26 and "regime main" in out  # the store and every dev grid point at least


@pytest.mark.parametrize("name", ["informative", "informative_graded"])
def test_a_regime_runs_the_main_protocols_choices_with_its_overrides(tmp_path, capsys, monkeypatch, name):
    monkeypatch.setattr(compare, "run_job", lambda *a, **k: pytest.fail("a job was started"))
    write_main_dev(tmp_path / "main")
    argv = ["--regime", name, "--main-out", str(tmp_path / "main"), "--out", str(tmp_path / name),
            "--workdir", str(tmp_path / "work")]
    assert compare.main(["--dry-run", *argv]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  [todo]")]
    methods = {"informative": ["sft_rejection", "drift", "grpo_turn"], "informative_graded": ["sft_rejection", "drift"]}
    assert [line[1] for line in lines] == ["store"] + [m for m in methods[name] for _ in range(3)]
    args = compare.finish(compare.parser().parse_args(argv))
    args.plan = compare.resolve_plan(args)
    _, _, chosen = compare.chosen_for(args)
    main_chosen, best = compare.main_choice(args)
    assert best == "grpo_turn" and chosen == {m: main_chosen[m] for m in methods[name]}
    runs = [compare.store_run("test", args.regime.argv), *compare.test_runs(args, "abc", chosen)]
    graded = ("reward.custom_reward_function.path=pkg://reward_fns.distance", "drift.partial_credit=0.5")
    for run in runs:
        assert "task=tiny_informative" in run.argv
        assert all((o in run.argv) == (name == "informative_graded") for o in graded)
    assert not (tmp_path / "work").exists() and not (tmp_path / name).exists()
    # the main protocol's own commands carry no override
    main = compare.finish(compare.parser().parse_args(["--out", str(tmp_path / "main")]))
    assert not any("task=" in a for run in compare.test_runs(main, "abc", main_chosen) for a in run.argv)


def test_a_regime_without_tuning_reports_its_differences_retry_and_lands_in_the_main_summary(tmp_path):
    dev, test, chosen = study()
    plan = protocol.Plan(("sft_rejection", "drift", "grpo_turn"), {
        "drift_minus_sft_rejection": ("drift", "sft_rejection"), "drift_minus_best_grpo": ("drift", protocol.BEST_GRPO)})
    test = {m: test[m] for m in plan.methods}
    chosen = {m: chosen[m] for m in plan.methods}
    full = protocol.report(None, test, None, SPLIT, HEALTH, STORE, plan, chosen)
    assert full["best_grpo"] == "grpo_turn" and set(full["rows"]) == {"reference", *plan.methods}
    assert full["differences"]["drift_minus_sft_rejection"]["paired"]
    assert full["differences"]["drift_minus_best_grpo"]["methods"] == ["drift", "grpo_turn"]
    summary = protocol.summary(full)
    assert summary["tuning"] is None and summary["tuning_cost"] is None and summary["drift_vs_grpo"] is not None
    full.update(command="c", non_repeat=None, retry=None, regime={"name": "informative", "about": "a",
                                                                  "overrides": [], "chosen_in": "docs/comparison"})
    full["weight_health"] = {**HEALTH, "settings": chosen["drift"], "store": STORE["store"],
                             "step_weight_sum_per_row": {}}
    assert "GRPO variant: grpo_turn (the better one on the main protocol’s dev)" in compare.markdown(full)
    assert set(summary["methods"]) == {"reference", *plan.methods}

    with pytest.raises(protocol.ProtocolError, match="no dev results and no chosen settings"):
        protocol.report(None, test, None, SPLIT, HEALTH, STORE, plan)
    both = protocol.Plan(("drift", *protocol.GRPO), {})
    with pytest.raises(protocol.ProtocolError, match="grpo and grpo_turn without dev results"):
        protocol.report(None, {m: study()[1][m] for m in both.methods}, None, SPLIT, HEALTH, STORE, both,
                        study()[2])

    graded = protocol.Plan(("sft_rejection", "drift"), {"drift_minus_sft_rejection": ("drift", "sft_rejection")})
    full = protocol.report(None, {m: test[m] for m in graded.methods}, None, SPLIT, HEALTH, STORE, graded, chosen)
    assert full["drift_vs_grpo"] is None and full["grpo_rollout_share"] is None
    full.update(command="python scripts/compare.py --regime informative", non_repeat=None,
                regime={"name": "informative", "about": "higher_lower", "overrides": ["task=tiny_informative"],
                        "chosen_in": "docs/comparison"},
                retry={"samples_per_problem": 8, "envs": ["try_again", "higher_lower"],
                       "models": {"reference": {"try_again": [0.25, 0.4, 0.5, 0.6, 0.70],
                                                "higher_lower": [0.25, 0.43, 0.57, 0.68, 0.75]}}})
    full["weight_health"] = {**HEALTH, "settings": chosen["drift"], "store": STORE["store"],
                             "step_weight_sum_per_row": {}}
    text = compare.markdown(full)
    assert "Regime **informative**" in text and "main protocol chose on dev (docs/comparison)" in text
    assert "Tuning on dev" not in text and "GRPO variant" not in text
    assert "| reference | 0.250 | 0.700 | 0.250 | 0.750 | +0.050 |" in text
    compare.plot_frontier(full, tmp_path / "frontier.png")

    (tmp_path / "main").mkdir()
    (tmp_path / "main" / "summary.json").write_text(json.dumps({"methods": {}}))
    compare.add_to_main_summary(tmp_path / "main", "informative", {"methods": {"drift": 1}})
    (tmp_path / "main" / "regimes" / "informative").mkdir(parents=True)
    (tmp_path / "main" / "regimes" / "informative" / "summary.json").write_text(json.dumps({"methods": {"drift": 1}}))
    assert json.loads((tmp_path / "main" / "summary.json").read_text())["regimes"] == {
        "informative": {"methods": {"drift": 1}}} == compare.regime_summaries(tmp_path / "main")


def test_the_rollout_heavy_regime_tunes_its_own_two_points_per_method_on_task_tiny_long(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(compare, "run_job", lambda *a, **k: pytest.fail("a job was started"))
    argv = ["--regime", "rollout_heavy", "--main-out", str(tmp_path / "main"), "--out", str(tmp_path / "heavy"),
            "--workdir", str(tmp_path / "work")]
    assert compare.main(["--dry-run", *argv]) == 0
    out = capsys.readouterr().out
    assert "dev phase: 7 jobs" in out and "test phase: 10 jobs" in out and "x 8 samples, seeds 0 1 2" in out
    args = compare.finish(compare.parser().parse_args(argv))
    assert (args.grid_points, args.grpo_max_steps, args.grpo_dev_freq, args.test_samples) == (2, 32, 8, 8)
    runs = compare.dev_runs(args, "abc")
    assert [r.method for r in runs] == ["store"] + [m for m in ("sft_rejection", "drift_rounds", "grpo_turn")
                                                    for _ in range(2)]
    assert all("task=tiny_long" in r.argv for r in runs)
    grpo = [r for r in runs if r.method == "grpo_turn"]
    assert all("trainer.total_training_steps=32" in r.argv and "trainer.test_freq=8" in r.argv for r in grpo)
    # the reference's dev row comes from rejection SFT's first point (the plan's reference_from)
    assert [("trainer.val_before_train=True" in r.argv) for r in runs[1:]] == [True] + [False] * 5
    # a flag given wins over the regime's own; the main protocol keeps its sizes
    assert compare.finish(compare.parser().parse_args([*argv, "--grid-points", "1"])).grid_points == 1
    main = compare.finish(compare.parser().parse_args([]))
    assert (main.grid_points, main.grpo_max_steps, main.grpo_dev_freq, main.test_samples) == (4, 64, 16, 16)
    of_regime = compare.main_protocol(args)  # what a regime reads the main protocol's choice from
    assert (of_regime.grid_points, of_regime.grpo_max_steps, of_regime.test_samples) == (4, 64, 16)


def test_a_tuned_regime_reports_iterative_drift_against_turn_level_grpo_and_rejection():
    dev, test, chosen = study()
    plan = compare.REGIMES["rollout_heavy"].plan
    full = protocol.report({m: dev[m] for m in plan.methods}, {m: test[m] for m in plan.methods}, STORE, SPLIT,
                           HEALTH, STORE, plan)
    summary = protocol.summary(full)
    assert full["best_grpo"] == "grpo_turn" and set(summary["methods"]) == {"reference", *plan.methods}
    assert set(summary["differences"]) == {"drift_minus_best_grpo", "drift_minus_sft_rejection"}
    assert full["differences"]["drift_minus_best_grpo"]["methods"] == ["drift_rounds", "grpo_turn"]
    assert summary["differences"]["drift_minus_best_grpo"]["mean"] == pytest.approx(0.70 - 0.69)
    assert set(summary["drift_vs_grpo"]) == {"target_solved_within_5", "wall_ratio", "wall_ratio_at_most",
                                             "token_ratio"}
    assert 0 < summary["grpo_rollout_share"] < 1 and set(summary["tuning"]) == set(plan.methods)

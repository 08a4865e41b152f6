"""The pure pieces of ``drift_verl.eval.evaluate``: metrics from the per-trajectory dump, config preparation, report."""

import json
import random
from dataclasses import asdict

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from verl.trainer.ppo.metric_utils import process_validation_metrics

from drift_verl.eval import evaluate as drift_eval
from drift_verl.main import StartupError
from drift_verl.core.metrics import metrics_from_info, multi_turn_metrics, trajectory_info, validation_summary
from reward_fns import by_source


def _random_trajectory(rng: random.Random, max_turns: int) -> tuple[list[float], list[str | None]]:
    """Wrong answers until the first correct one (or T turns), some unparsed, some repeated."""
    rewards, answers = [], []
    for _ in range(rng.randint(1, max_turns)):
        answers.append(None if rng.random() < 0.2 else str(rng.randint(0, 3)))
        rewards.append(1.0 if answers[-1] is not None and rng.random() < 0.3 else 0.0)
        if rewards[-1] >= 1.0:
            break
    return rewards, answers


def _reference(turn_rewards, answers, max_turns) -> dict:
    """The metrics' definitions written out turn by turn, independently of drift_verl.core.metrics."""
    n = len(turn_rewards)
    ref = {}
    for t in range(1, max_turns + 1):
        correct_at_t = [len(rs) >= t and rs[t - 1] >= 1.0 for rs in turn_rewards]
        unsolved_before = [len(rs) >= t and all(r < 1.0 for r in rs[:t - 1]) for rs in turn_rewards]
        ref[f"acc_at_turn_{t}"] = sum(correct_at_t) / n
        ref[f"solved_within_{t}"] = sum(any(r >= 1.0 for r in rs[:t]) for rs in turn_rewards) / n
        if t > 1 and sum(unsolved_before):
            ref[f"correction_rate_turn_{t}"] = sum(correct_at_t) / sum(unsolved_before)
    solved = [rs.index(1.0) + 1 for rs in turn_rewards if 1.0 in rs]
    ref["mean_turns_to_solve"] = sum(solved) / len(solved) if solved else 0.0
    after = [(a, given[:i]) for given in answers for i, a in enumerate(given) if i > 0 and a is not None]
    ref["non_repeat_ratio"] = sum(a not in earlier for a, earlier in after) / len(after) if after else 1.0
    turns = [a for given in answers for a in given]
    ref["format_failure_rate"] = turns.count(None) / len(turns)
    ref["mean_turns"] = len(turns) / n
    return ref


@pytest.mark.parametrize("seed", range(20))
def test_metrics_from_dumped_info_match_the_definitions(seed):
    rng = random.Random(seed)
    max_turns = rng.randint(1, 5)
    trajectories = [_random_trajectory(rng, max_turns) for _ in range(rng.randint(1, 40))]
    rewards, answers = [r for r, _ in trajectories], [a for _, a in trajectories]
    # what verl's validation dump holds per trajectory: the feedback loop's reward_extra_info, through JSON
    infos = [json.loads(json.dumps(trajectory_info(r, a, max_turns))) for r, a in trajectories]
    from_dump = metrics_from_info(infos, max_turns)
    assert from_dump == multi_turn_metrics(rewards, answers, max_turns)
    reference = _reference(rewards, answers, max_turns)
    assert from_dump.keys() == reference.keys()
    for key, value in reference.items():
        assert from_dump[key] == pytest.approx(value), key
    within = [from_dump[f"solved_within_{k}"] for k in range(1, max_turns + 1)]
    assert within == sorted(within) and within[-1] == pytest.approx(sum(i["acc"] for i in infos) / len(infos))


def test_metrics_from_no_trajectories_are_empty():
    assert metrics_from_info([], 3) == {}


def _parquet(path, rows):
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


def _rows(source, count, ability="math"):
    return [{"data_source": source, "ability": ability, "prompt": [{"role": "user", "content": f"q{i}"}],
             "reward_model": {"style": "rule", "ground_truth": "1"}} for i in range(count)]


@pytest.fixture
def bench_files(tmp_path):
    math = _parquet(tmp_path / "math.parquet", _rows("gsm8k", 3) + _rows("math500", 2))
    mcq = _parquet(tmp_path / "mcq.parquet", _rows("mmlu", 4, ability="choice"))
    more = _parquet(tmp_path / "more_gsm8k.parquet", _rows("gsm8k", 1))
    return math, mcq, more


def test_benchmarks_are_data_sources_with_kind(bench_files):
    math, mcq, more = bench_files
    benches = drift_eval.read_benchmarks([math, mcq, more], choice_sources=["math500"])
    assert {n: (b.kind, b.prompts) for n, b in benches.items()} == {
        "gsm8k": ("math", 4), "math500": ("choice", 2), "mmlu": ("choice", 4)}
    assert benches["gsm8k"].files == [math, more]
    with pytest.raises(StartupError, match="not found"):
        drift_eval.read_benchmarks([math + ".missing"], [])


def _compose(overrides):
    with initialize_config_module(config_module="recipes", version_base=None):
        return compose(config_name="drift_eval", overrides=["platform=cpu", *overrides])


def test_prepare_makes_a_validation_only_run(bench_files, tmp_path):
    math, mcq, _ = bench_files
    config = _compose([f"eval.benchmarks=[{math},{mcq}]", f"eval.output_dir={tmp_path / 'out'}", "recipe=drift",
                       "eval.rewards={math500: pkg://reward_fns.math}"])
    benches, output = drift_eval.prepare(config)
    assert output == tmp_path / "out" and set(benches) == {"gsm8k", "math500", "mmlu"}
    trainer = config.trainer
    assert trainer.val_only and trainer.val_before_train and trainer.v1.trainer_mode == "sync"
    assert trainer.resume_mode == "disable" and trainer.validation_data_dir == str(tmp_path / "out" / "generations")
    assert list(config.data.val_files) == [math, mcq]
    val = config.actor_rollout_ref.rollout.val_kwargs
    assert (val.temperature, val.n, val.do_sample) == (0.0, 1, False)  # greedy by default
    verifier = config.reward.custom_reward_function
    assert verifier.path == drift_eval.BY_SOURCE
    assert verifier.reward_kwargs.default == "pkg://reward_fns.exact"  # the task's verifier for the rest
    assert dict(verifier.reward_kwargs.routes) == {"mmlu": "pkg://reward_fns.choice", "math500": "pkg://reward_fns.math"}


def test_prepare_sampled_and_checkpoint(bench_files, tmp_path):
    math, _, _ = bench_files
    checkpoint = tmp_path / "run" / "global_step_7"
    (checkpoint / "actor").mkdir(parents=True)
    config = _compose([f"eval.benchmarks=[{math}]", "eval.temperature=1.0", "eval.n=4", f"eval.checkpoint={checkpoint}"])
    drift_eval.prepare(config)
    val = config.actor_rollout_ref.rollout.val_kwargs
    assert (val.temperature, val.n, val.do_sample) == (1.0, 4, True)
    assert config.trainer.resume_mode == "resume_path" and config.trainer.resume_from_path == str(checkpoint)
    assert config.reward.custom_reward_function.path == "pkg://reward_fns.exact"  # no route needed
    with pytest.raises(StartupError, match="global_step_N"):
        drift_eval.prepare(_compose([f"eval.benchmarks=[{math}]", f"eval.checkpoint={tmp_path}"]))


def _dump_row(source, rewards, answers, max_turns):
    return {"input": "q", "output": "a", "score": 0.0, **trajectory_info(rewards, answers, max_turns),
            "data_source": source}


def test_score_and_report(bench_files, tmp_path):
    math, mcq, _ = bench_files
    benches = drift_eval.read_benchmarks([math, mcq], [])
    rows = [_dump_row("gsm8k", [0.0, 1.0], ["1", "2"], 3), _dump_row("gsm8k", [1.0], ["2"], 3),
            _dump_row("gsm8k", [0.0, 0.0, 0.0], ["1", "1", None], 3), _dump_row("mmlu", [0.0, 1.0], ["A", "B"], 3)]
    drift_eval.score(benches, rows, 3)
    gsm8k = benches["gsm8k"]
    assert gsm8k.trajectories == 3 and gsm8k.metrics["solved_within_1"] == pytest.approx(1 / 3)
    assert gsm8k.metrics["solved_within_3"] == pytest.approx(2 / 3)
    assert gsm8k.metrics["correction_rate_turn_2"] == pytest.approx(1 / 2)
    assert benches["math500"].trajectories == 0 and benches["math500"].metrics == {}
    report = {"model": "m", "checkpoint": None, "max_turns": 3,
              "sampling": {"mode": "greedy", "val_kwargs": {"temperature": 0.0, "n": 1}},
              "benchmarks": {n: asdict(b) for n, b in benches.items()}}
    paths = drift_eval.write_report(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text()) == report
    md = paths["markdown"].read_text()
    math_part, choice_part = md.split("## Multiple-choice benchmarks")
    assert "| gsm8k | 3 | 3 | 0.333 | 0.667 | 0.667 | 1.500 |" in math_part and "### math500" in math_part
    assert "| mmlu | 4 | 1 |" in choice_part and "### mmlu" in choice_part
    assert "| 2 | 0.333 | 0.667 | 0.500 |" in math_part  # turn 2: acc, solved within, correction rate
    assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(RuntimeError, match="drift_feedback"):
        drift_eval.score(benches, [{"input": "q", "score": 1.0}], 3)


def test_by_source_reward_routes_per_data_source():
    routes = {"mcq": "pkg://reward_fns.choice"}
    kwargs = {"routes": routes, "default": "pkg://reward_fns.exact", "answer_format": "answer"}
    assert by_source.compute_score("mcq", "<answer>(B) 42</answer>", "B", None, **kwargs) == 1.0
    assert by_source.compute_score("gsm8k", "<answer>42</answer>", "42", None, **kwargs) == 1.0
    assert by_source.compute_score("gsm8k", "<answer>B</answer>", "42", None, **kwargs) == 0.0
    with pytest.raises(ValueError, match="no route"):
        by_source.compute_score("other", "x", "1", None, routes=routes)


def test_by_source_scores_within_a_verifier_workers_deadline():
    """The evaluation's verifier as the feedback loop calls it: in a capped worker process, each call (the first
    included, which loads the routed functions) within a deadline far below the verifier timeout."""
    from drift_verl.integration.verifier import VerifierPool

    pool = VerifierPool(size=1)
    try:
        pool.call("pkg://reward_fns.exact", "compute_score", ("warm", "", "1"), {}, 60)  # the worker's own start
        kwargs = {"routes": {"mcq": "pkg://reward_fns.choice"}, "default": "pkg://reward_fns.exact"}
        for source, answer, gold in (("mcq", "<answer>B</answer>", "B"), ("add", "<answer>12</answer>", "12")):
            call = ("pkg://reward_fns.by_source", "compute_score", (source, answer, gold), kwargs, 2.0)
            assert pool.call(*call) == 1.0, source
    finally:
        pool.close()


def test_validation_logs_give_the_same_metrics():
    """verl's validation averages the feedback loop's reward_extra_info per data source (strings skipped); the
    summary of those means equals the metrics of the trajectories themselves."""
    rng, max_turns = random.Random(0), 4
    sources, uids, infos, trajectories = [], [], {}, {"a": [], "b": []}
    for prompt in range(30):
        source = "ab"[prompt % 2]
        for _ in range(2):  # val_kwargs.n = 2
            rewards, answers = _random_trajectory(rng, max_turns)
            trajectories[source].append((rewards, answers))
            sources.append(source)
            uids.append(f"u{prompt}")
            for key, value in {**trajectory_info(rewards, answers, max_turns), "data_source": source}.items():
                infos.setdefault(key, []).append(value)
    logged = {f"val-aux/{source}/{var}/{name}": value
              for source, per_var in process_validation_metrics(sources, uids, infos).items()
              for var, per_metric in per_var.items() for name, value in per_metric.items()}
    summary = validation_summary(logged)
    assert set(summary) == {"a", "b"}
    for source, pairs in trajectories.items():
        expected = multi_turn_metrics([r for r, _ in pairs], [a for _, a in pairs], max_turns)
        assert summary[source].keys() == expected.keys()
        for key, value in expected.items():
            assert summary[source][key] == pytest.approx(value), key


def test_outputs_over_a_benchmark_are_refused(bench_files, tmp_path):
    """eval.json / eval.md / the plot are replaced and generations/ is cleared: a benchmark there is refused."""
    math, _, _ = bench_files
    out = tmp_path / "out"
    for benchmark in (out / "eval.md", out / "generations" / "mine.parquet"):
        with pytest.raises(StartupError, match="would overwrite the input"):
            drift_eval.prepare(_compose([f"eval.benchmarks=[{math},{benchmark}]", f"eval.output_dir={out}"]))

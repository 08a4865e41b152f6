"""``python -m drift_verl.eval [platform=cpu] [eval.benchmarks=[a.parquet,b.parquet]] [overrides...]``.

Multi-turn evaluation of a model (``actor_rollout_ref.model.path``, optionally with a verl checkpoint loaded on
top, ``eval.checkpoint``) on parquet benchmarks: verl's own validation (``trainer.val_only``) through the
feedback agent loop and vLLM rollout servers, exactly what training's validation runs, with verl's
per-trajectory dump (``trainer.validation_data_dir``) turned into the metrics of :mod:`drift_verl.core.metrics` per
benchmark (data source). Multiple-choice benchmarks are reported apart from math. Writes ``eval.json``,
``eval.md`` and ``accuracy_by_turn.png`` under ``eval.output_dir`` and prints the markdown.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from drift_verl.core import plots
from drift_verl.core import safe_io
from drift_verl.main import StartupError, run
from drift_verl.core.metrics import metrics_from_info

CHOICE_ABILITIES = {"choice", "multiple_choice", "multiple-choice", "mcq"}
KINDS = {"math": "Math benchmarks", "choice": "Multiple-choice benchmarks"}
BY_SOURCE = "pkg://reward_fns.by_source"


@dataclass
class Benchmark:
    """One data source of the benchmark files: the unit verl's validation and this report break down by."""

    name: str
    kind: str = "math"
    files: list[str] = field(default_factory=list)
    prompts: int = 0
    trajectories: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def read_benchmarks(files: list[str], choice_sources: list[str]) -> dict[str, Benchmark]:
    """Data sources of the benchmark files, with their prompt counts and kind (``choice`` when listed in
    ``choice_sources`` or when their rows' ``ability`` says so, else ``math``)."""
    import pandas as pd

    benchmarks: dict[str, Benchmark] = {}
    for path in files:
        if not Path(path).is_file():
            raise StartupError(f"benchmark file not found: {path}")
        table = pd.read_parquet(path)
        if "data_source" not in table:
            raise StartupError(f"{path}: no data_source column (verl's RL parquet schema, see README 'Data')")
        for source, rows in table.groupby("data_source", sort=False):
            bench = benchmarks.setdefault(str(source), Benchmark(str(source)))
            bench.files.append(str(path))
            bench.prompts += len(rows)
            abilities = set(rows["ability"].astype(str).str.lower()) if "ability" in rows else set()
            if bench.name in choice_sources or abilities & CHOICE_ABILITIES:
                bench.kind = "choice"
    return benchmarks


def verifier_routes(benchmarks: dict[str, Benchmark], rewards: dict, choice_reward: str | None) -> dict[str, str]:
    """Data source -> verifier path for the sources that do not use the task's verifier."""
    routes = {name: choice_reward for name, bench in benchmarks.items() if bench.kind == "choice" and choice_reward}
    routes.update({str(k): str(v) for k, v in rewards.items()})
    return routes


def prepare(config: DictConfig) -> tuple[dict[str, Benchmark], Path]:
    """Turn the composed training config into a validation-only run over the benchmarks (in place)."""
    spec = config.eval
    files = _as_list(spec.benchmarks) or _as_list(config.data.val_files)
    if not files:
        raise StartupError("no benchmarks: set eval.benchmarks=[a.parquet,...] (or data.val_files)")
    output = Path(spec.output_dir).resolve()
    for written in ("eval.json", "eval.md", "accuracy_by_turn.png", "generations"):  # generations/ is cleared
        try:
            safe_io.refuse_overwriting(output / written, files, what="eval.output_dir file")
        except safe_io.OutputOverInput as error:
            raise StartupError(str(error)) from None
    benchmarks = read_benchmarks(files, _as_list(spec.choice_sources))
    checkpoint = spec.checkpoint
    if checkpoint is not None:
        checkpoint = Path(checkpoint).resolve()
        if not (checkpoint / "actor").is_dir() or not checkpoint.name.startswith("global_step_"):
            raise StartupError(f"eval.checkpoint={spec.checkpoint}: expected a verl checkpoint folder "
                               "<trainer.default_local_dir>/global_step_N with an actor/ subfolder")
    routes = verifier_routes(benchmarks, spec.rewards or {}, spec.choice_reward)
    with open_dict(config):
        config.data.val_files = files
        config.data.train_files = files  # verl builds a train dataset even for validation only; never used
        trainer = config.trainer
        trainer.val_only = True
        trainer.val_before_train = True
        trainer.v1.trainer_mode = "sync"  # recipe=drift's trainer would train
        trainer.total_training_steps = 1  # only sizes the (unused) LR schedule
        trainer.validation_data_dir = str(output / "generations")
        # never resume a training run that happens to live in default_local_dir
        trainer.resume_mode = "disable" if checkpoint is None else "resume_path"
        trainer.resume_from_path = None if checkpoint is None else str(checkpoint)
        temperature = float(spec.temperature)
        config.actor_rollout_ref.rollout.val_kwargs.update(
            temperature=temperature, top_p=float(spec.top_p), top_k=int(spec.top_k), n=int(spec.n),
            do_sample=temperature > 0,
        )
        if routes:
            verifier = config.reward.custom_reward_function
            kwargs = OmegaConf.to_container(OmegaConf.create(verifier.get("reward_kwargs") or {}), resolve=True)
            if verifier.path != BY_SOURCE:  # else: already routed; add to its routes
                kwargs["default"] = verifier.path
            kwargs["routes"] = {**kwargs.get("routes", {}), **routes}
            verifier.path, verifier.name, verifier.reward_kwargs = BY_SOURCE, "compute_score", kwargs
    return benchmarks, output


def read_generations(directory: Path) -> list[dict]:
    """verl's validation dump (``<step>.jsonl``, one trajectory a line)."""
    dumps = sorted(directory.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError(f"verl wrote no validation dump under {directory}")
    return [json.loads(line) for line in dumps[-1].read_text().splitlines() if line.strip()]


def score(benchmarks: dict[str, Benchmark], rows: list[dict], max_turns: int) -> dict[str, Benchmark]:
    """Metrics per benchmark from the dumped trajectories' ``reward_extra_info`` (drift_feedback's)."""
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        if row.get("data_source") is None or row.get("solved_turn") is None:
            raise RuntimeError("the validation dump has no per-trajectory turn info: evaluation needs the "
                               "drift_feedback agent loop (actor_rollout_ref.rollout.agent.default_agent_loop)")
        by_source.setdefault(str(row["data_source"]), []).append(row)
    for name, bench in benchmarks.items():
        infos = by_source.get(name, [])
        bench.trajectories = len(infos)
        bench.metrics = metrics_from_info(infos, max_turns)
        if infos:  # calls that timed out, raised or crashed scored 0: above 0, the scores understate the model
            bench.metrics["verifier_failures"] = sum(int(row.get("verifier_failures", 0)) for row in infos)
    return benchmarks


def _cell(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(report: dict) -> str:
    """Summary table per kind, then a per-turn table per benchmark."""
    turns = report["max_turns"]
    lines = ["# Multi-turn evaluation", "", f"- model: `{report['model']}`"]
    if report["checkpoint"]:
        lines.append(f"- checkpoint: `{report['checkpoint']}`")
    lines.append(f"- {turns} turns, {report['sampling']['mode']} ({json.dumps(report['sampling']['val_kwargs'])})")
    failed = {name: b["metrics"]["verifier_failures"] for name, b in report["benchmarks"].items()
              if b["metrics"].get("verifier_failures")}
    if failed:
        lines.append(f"- verifier calls that failed and scored 0 (the scores understate the model): {failed}")
    for kind, heading in KINDS.items():
        group = {name: b for name, b in report["benchmarks"].items() if b["kind"] == kind}
        if not group:
            continue
        header = ["benchmark", "prompts", "trajectories", *(f"solved within {k}" for k in range(1, turns + 1)),
                  "mean turns to solve", "non-repeat", "format failures"]
        lines += ["", f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, bench in group.items():
            m = bench["metrics"]
            cells = [name, str(bench["prompts"]), str(bench["trajectories"]),
                     *(_cell(m.get(f"solved_within_{k}")) for k in range(1, turns + 1)),
                     *(_cell(m.get(key)) for key in ("mean_turns_to_solve", "non_repeat_ratio", "format_failure_rate"))]
            lines.append("| " + " | ".join(cells) + " |")
        for name, bench in group.items():
            m = bench["metrics"]
            lines += ["", f"### {name}", "", "| turn t | acc at turn t | solved within t | correction rate (wrong→right) |",
                      "|---|---|---|---|"]
            lines += [f"| {t} | {_cell(m.get(f'acc_at_turn_{t}'))} | {_cell(m.get(f'solved_within_{t}'))} | "
                      f"{_cell(m.get(f'correction_rate_turn_{t}'))} |" for t in range(1, turns + 1)]
    return "\n".join(lines) + "\n"


def write_report(report: dict, output: Path) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    paths = {"json": output / "eval.json", "markdown": output / "eval.md", "plot": output / "accuracy_by_turn.png"}
    safe_io.write_text(paths["json"], json.dumps(report, indent=2))
    safe_io.write_text(paths["markdown"], markdown(report))
    results = {f"{name} ({b['kind']})": b["metrics"] for name, b in report["benchmarks"].items()}
    plots.benchmark_turn_plot(results, report["max_turns"], paths["plot"])
    return paths


def evaluate(config: DictConfig) -> dict:
    benchmarks, output = prepare(config)
    generations = Path(config.trainer.validation_data_dir)
    for stale in generations.glob("*.jsonl"):
        stale.unlink()
    run(config)
    max_turns = int(config.drift.env.max_turns)
    score(benchmarks, read_generations(generations), max_turns)
    val_kwargs = OmegaConf.to_container(config.actor_rollout_ref.rollout.val_kwargs, resolve=True)
    val_kwargs.pop("_target_", None)
    report = {
        "model": str(config.actor_rollout_ref.model.path),
        "checkpoint": config.trainer.resume_from_path,
        "max_turns": max_turns,
        "sampling": {"mode": "sampled" if val_kwargs["temperature"] > 0 else "greedy", "val_kwargs": val_kwargs},
        "benchmarks": {name: asdict(bench) for name, bench in benchmarks.items()},
    }
    paths = write_report(report, output)
    for bench in benchmarks.values():
        expected = bench.prompts * int(val_kwargs["n"])
        if bench.trajectories < expected:
            print(f"[drift eval] warning: {bench.name}: {bench.trajectories} of {expected} trajectories "
                  "(prompts filtered as too long, data.val_max_samples, or failed rollouts)")
    print(paths["markdown"].read_text())
    print("[drift eval] " + ", ".join(f"{kind}: {path}" for kind, path in paths.items()))
    return report


@hydra.main(config_path="pkg://recipes", config_name="drift_eval", version_base=None)
def main(config: DictConfig) -> None:
    evaluate(config)


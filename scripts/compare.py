"""The paper's comparison in miniature, on the embedded tiny task: reference policy, unweighted SFT, rejection SFT,
GRPO (trajectory credit), GRPO (turn-level credit) and DRIFT with a beta/gamma sweep reusing one trajectory store,
on the same prompts, reference policy and held-out validation set (all 128 problems x 16 samples).

    python scripts/compare.py --out docs/comparison [--seeds 0 1 2] [--sweep-seeds 1] [--grpo-steps 32] [--grpo-test-freq 8]

The six methods run for every seed (DRIFT-family: mini-batch order; GRPO: prompt order and sampling); the
beta/gamma sweep rows for the first ``--sweep-seeds`` seeds. Every run is a
real ``python -m drift_verl.main`` job; finished runs are kept (``<workdir>/<run>/result.json``), so an interrupted
comparison resumes where it stopped. Writes ``<out>/comparison.md``, ``comparison.json``, ``summary.json`` (the
fixed schema below) and ``comparison.png``.

Cost (``wall_s``, ``rollout_tokens``): rollouts + updates, start-up and validation excluded. DRIFT-family rows
pay the store's rollouts once (the store is shared) plus their own update; GRPO pays the step times and response
tokens up to its last validation point.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from drift_verl.core.metrics import validation_summary
from drift_verl.eval.runs import run_job, tail

MAX_TURNS = 5
SUMMARY_METRICS = ("solved_within_1", "solved_within_5", "non_repeat", "step0_solved_within_5", "wall_s",
                   "rollout_tokens")
VALIDATION = ["data.val_max_samples=-1", "actor_rollout_ref.rollout.val_kwargs.n=16"]
DRIFT_FAMILY = {  # summary name -> drift.* options
    "drift": {},
    "sft_uniform": {"weighting": "uniform"},
    "sft_rejection": {"weighting": "rejection"},
}


TRAIN_PROMPTS = 256  # of the task's 872 training problems, for every row (data.seed fixes which)


def common(run_dir: Path, save_freq: int = -1) -> list[str]:
    # DRIFT saves at the end of its round; the Hugging Face weights are for scripts/non_repeat.py
    return ["platform=cpu", "trainer.logger=[console,file]", f"trainer.default_local_dir={run_dir / 'checkpoints'}",
            f"data.train_max_samples={TRAIN_PROMPTS}",
            f"trainer.save_freq={save_freq}", "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
            *VALIDATION]


DRIFT_EPOCHS = 1  # one pass over 256 prompts x 8 (64 steps); the main job's 6 passes over 64 prompts overfit more


def drift_args(run_dir: Path, store: Path, seed: int, validate_reference: bool, **drift) -> list[str]:
    overrides = {"seed": seed, "store_dir": store, "epochs": DRIFT_EPOCHS, **drift}
    return ["-m", "drift_verl.main", "recipe=drift", *common(run_dir), f"trainer.val_before_train={validate_reference}",
            *(f"drift.{key}={value}" for key, value in overrides.items())]


def grpo_args(run_dir: Path, seed: int, steps: int, test_freq: int, estimator: str) -> list[str]:
    # recipe=grpo as it ships: task_recipe/tiny_grpo.yaml's 16 prompts x 8 per update (docs/comparison/README.md)
    return ["-m", "drift_verl.main", "recipe=grpo", *common(run_dir, save_freq=steps),
            f"algorithm.adv_estimator={estimator}", f"trainer.total_training_steps={steps}",
            f"trainer.test_freq={test_freq}", "trainer.total_epochs=100",
            f"actor_rollout_ref.actor.data_loader_seed={seed}"]  # data.seed stays the task's: the same problems


def run(name: str, argv: list[str], workdir: Path) -> dict:
    """One job, cached: its metrics by step and wall time."""
    run_dir = workdir / name
    result_file = run_dir / "result.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    print(f"[compare] {name}: python {' '.join(argv)}", flush=True)
    proc, metrics, wall = run_job(argv, run_dir, timeout=3600)
    if proc.returncode != 0:
        sys.exit(f"[compare] {name} failed (exit {proc.returncode}); see {run_dir / 'job.log'}\n{tail(proc, 30)}")
    result = {"wall_s": wall, "metrics": {str(step): values for step, values in metrics.items()}}
    result_file.write_text(json.dumps(result))
    return result


def by_step(result: dict) -> dict[int, dict]:
    return {int(step): values for step, values in result["metrics"].items()}


def validation_points(result: dict) -> list[tuple[int, dict]]:
    """(step, metrics of the one data source) at each validation."""
    points = []
    for step, values in sorted(by_step(result).items()):
        summary = validation_summary(values)
        if summary:
            points.append((step, next(iter(summary.values()))))
    return points


def row(point: dict, step0: dict, wall_s: float, tokens: float) -> dict:
    return {**{f"solved_within_{k}": point[f"solved_within_{k}"] for k in range(1, MAX_TURNS + 1)},
            "non_repeat": point["non_repeat_ratio"], "step0_solved_within_5": step0["solved_within_5"],
            "wall_s": wall_s, "rollout_tokens": tokens}


def store_cost(result: dict) -> dict:
    rollout = next(v for v in by_step(result).values() if "drift/rollout/wall_s" in v)
    return {"wall_s": rollout["drift/rollout/wall_s"], "tokens": rollout["drift/rollout/response_tokens"]}


def drift_row(result: dict, cost: dict, step0: dict) -> dict:
    update_s = sum(v.get("drift/update/step_s", 0.0) for v in by_step(result).values())
    return row(validation_points(result)[-1][1], step0, cost["wall_s"] + update_s, cost["tokens"])


def grpo_curve(result: dict, trajectories_per_step: int) -> list[dict]:
    """Each validation point with the step time and response tokens spent up to it."""
    metrics, points = by_step(result), dict(validation_points(result))
    curve, seconds, tokens = [], 0.0, 0.0
    for step in sorted(metrics):
        if step > 0:
            seconds += metrics[step].get("timing_s/step", 0.0)
            tokens += metrics[step].get("response_length/mean", 0.0) * trajectories_per_step
        if step in points:
            curve.append({"step": step, **row(points[step], points[min(points)], seconds, tokens)})
    return curve


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """The seeds' curves averaged point by point (they validate at the same steps)."""
    return [{key: statistics.fmean(c[i][key] for c in curves) for key in curves[0][i]}
            for i in range(min(map(len, curves)))]


def cost_to_reach(curve: list[dict], target: float) -> dict | None:
    """The cost at the first trained point of a mean curve whose solved-within-5 reaches ``target``."""
    return next((p for p in curve if p["step"] > 0 and p["solved_within_5"] >= target - 1e-9), None)


def drift_vs_grpo(rows: dict[str, list[dict]], curves: dict[str, list[dict]]) -> dict:
    """DRIFT's cost to reach the best GRPO variant's mean final solved-within-5, over that GRPO's cost to reach it
    (its mean curve's first point at or above it); null ratios when DRIFT's mean does not reach it."""
    finals = {name: statistics.fmean(r["solved_within_5"] for r in rows[name]) for name in curves}
    best = max(finals, key=finals.get)
    target = finals[best]
    drift = {key: statistics.fmean(r[key] for r in rows["drift"]) for key in ("solved_within_5", "wall_s",
                                                                             "rollout_tokens")}
    grpo = cost_to_reach(curves[best], target)
    reached = drift["solved_within_5"] >= target - 1e-9 and grpo is not None
    return {"target_solved_within_5": target, "grpo_variant": best,
            "wall_ratio": drift["wall_s"] / grpo["wall_s"] if reached else None,
            "token_ratio": drift["rollout_tokens"] / grpo["rollout_tokens"] if reached else None}


def summary(rows: dict[str, list[dict]], seeds: list[int], curves: dict[str, list[dict]]) -> dict:
    methods = {name: {metric: mean_std([r[metric] for r in rows[name]]) for metric in SUMMARY_METRICS}
               for name in ("reference", "sft_uniform", "sft_rejection", "grpo", "grpo_turn", "drift")}
    comparison = drift_vs_grpo(rows, curves)
    return {"validation_prompts": 128, "samples_per_prompt": 16, "seeds": seeds, "methods": methods,
            "drift_vs_grpo": {key: comparison[key] for key in ("target_solved_within_5", "wall_ratio", "token_ratio")}}


def markdown(rows: dict[str, list[dict]], seeds: list[int], command: str, comparison: dict, study: dict) -> str:
    header = ["method", *[f"solved≤{k}" for k in range(1, MAX_TURNS + 1)], "non-repeat", "step 0 solved≤5",
              "wall-clock (s)", "rollout tokens"]
    columns = [f"solved_within_{k}" for k in range(1, MAX_TURNS + 1)] + ["non_repeat", "step0_solved_within_5"]
    lines = [f"Seeds: {', '.join(map(str, seeds))} (mean ± std over seeds). Command: `{command}`", "",
             "Validation: 128 held-out problems x 16 trajectories at temperature 1, T=5. Cost: rollouts + updates, "
             "start-up and validation excluded; rollout tokens are response tokens generated for training.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, values in rows.items():
        stats = {k: mean_std([r[k] for r in values]) for k in values[0]}
        cells = [name] + [_fmt(stats[c]) for c in columns] + [_fmt(stats["wall_s"], 0), _fmt(stats["rollout_tokens"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
    ratio = (f"DRIFT / {comparison['grpo_variant']}: wall-clock {comparison['wall_ratio']:.2f}, rollout tokens "
             f"{comparison['token_ratio']:.2f}" if comparison["wall_ratio"] is not None else
             f"DRIFT's mean solved≤5 does not reach {comparison['grpo_variant']}'s")
    lines += ["", f"Target (best GRPO variant's mean final solved≤5): {comparison['target_solved_within_5']:.3f}. "
              f"{ratio}.", "",
              f"Non-repeat on fixed contexts (scripts/non_repeat.py, seed {seeds[0]}'s policies): {study['contexts']} "
              f"reference trajectories whose parseable first answer was wrong, cut before turn 2; "
              f"{study['samples_per_context']} sampled second answers each.", "",
              "| policy | repeats the rejected answer | non-repeat | second answer right | parseable |", "|---|---|---|---|---|"]
    for name, m in study["models"].items():
        lines.append(f"| {name} | {1 - m['non_repeat']:.3f} | {m['non_repeat']:.3f} | {m['correct']:.3f} | "
                     f"{m['parseable']:.3f} |")
    return "\n".join(lines) + "\n"


def _fmt(stat: dict, digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["std"] else "")


def plot(rows: dict[str, list[dict]], curves: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ks = list(range(1, MAX_TURNS + 1))
    for name in ("reference", "sft_uniform", "sft_rejection", "grpo", "grpo_turn", "drift"):
        left.plot(ks, [statistics.fmean(r[f"solved_within_{k}"] for r in rows[name]) for k in ks], marker="o",
                  label=name)
    left.set(xlabel="k (turns)", ylabel="solved within k", title="Validation: solved within k turns", xticks=ks)
    left.legend(fontsize=8)
    for name, curve in curves.items():
        right.plot([p["wall_s"] for p in curve], [p["solved_within_5"] for p in curve], marker=".", label=name)
    drift = mean_std([r["solved_within_5"] for r in rows["drift"]])
    right.errorbar([statistics.fmean(r["wall_s"] for r in rows["drift"])], [drift["mean"]], yerr=[drift["std"]],
                   fmt="*", markersize=14, label="drift")
    right.axhline(statistics.fmean(r["solved_within_5"] for r in rows["reference"]), color="gray", linestyle="--",
                  label="reference")
    right.set(xlabel="wall-clock of rollouts + updates (s)", ylabel="solved within 5 (mean over seeds)",
              title="Validation vs cost")
    right.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def hf_weights(run_dir: Path) -> str:
    """The Hugging Face folder of a run's last checkpoint."""
    steps = sorted((run_dir / "checkpoints").glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    return str(steps[-1] / "actor" / "huggingface")


def non_repeat_study(workdir: Path, seed: int, out: Path) -> dict:
    """scripts/non_repeat.py on the store's fixed turn-2 contexts: the reference and each method's seed-``seed`` policy."""
    from drift_verl.tiny.assets import tiny_reference

    out_file = out / "non_repeat.json"
    (store,) = [p for p in (workdir / "store").iterdir() if p.is_dir()]
    models = {"reference": tiny_reference(), **{name: hf_weights(workdir / f"{name}-seed{seed}")
                                                for name in ("sft_uniform", "sft_rejection", "grpo", "grpo_turn", "drift")}}
    argv = ["--store", str(store), "--out", str(out_file), *(f"--model={n}={path}" for n, path in models.items())]
    sys.path.insert(0, str(Path(__file__).parent))
    import non_repeat

    if non_repeat.main(argv) != 0:
        sys.exit("[compare] the non-repeat study failed")
    return json.loads(out_file.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/comparison"))
    parser.add_argument("--workdir", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--betas", type=float, nargs="*", default=[0.05, 1.0])
    parser.add_argument("--gammas", type=float, nargs="*", default=[0.5])
    parser.add_argument("--sweep-seeds", type=int, default=1, help="how many of the seeds run the beta/gamma sweep rows")
    parser.add_argument("--grpo-steps", type=int, default=32)
    parser.add_argument("--grpo-test-freq", type=int, default=8)
    args = parser.parse_args(argv)
    command = "python scripts/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    workdir = args.workdir.resolve()
    store = workdir / "store"
    trajectories_per_step = 16 * 8  # task_recipe/tiny_grpo.yaml's data.train_batch_size x the task's rollout.n

    rows: dict[str, list[dict]] = {}
    seed_curves: dict[str, list[list[dict]]] = {}
    sweep = {**{f"drift_beta{b:g}": {"beta": b} for b in args.betas},
             **{f"drift_gamma{g:g}": {"gamma": g} for g in args.gammas}, "drift_all_turns": {"train_turns": "all"}}
    for seed in args.seeds:
        variants = {**DRIFT_FAMILY, **(sweep if seed in args.seeds[:args.sweep_seeds] else {})}
        # the first run of each seed validates the reference (step 0) and, for the first seed, makes the store
        first = run(f"drift-seed{seed}", drift_args(workdir / f"drift-seed{seed}", store, seed, True), workdir)
        step0 = validation_points(first)[0][1]
        cost = store_cost(first) if seed == args.seeds[0] else cost  # the store's rollouts, made once
        rows.setdefault("reference", []).append(row(step0, step0, 0.0, 0.0))
        for name, options in variants.items():
            result = first if name == "drift" else run(
                f"{name}-seed{seed}", drift_args(workdir / f"{name}-seed{seed}", store, seed, False, **options), workdir)
            rows.setdefault(name, []).append(drift_row(result, cost, step0))
        for name, estimator in (("grpo", "grpo"), ("grpo_turn", "grpo_turn")):
            result = run(f"{name}-seed{seed}", grpo_args(workdir / f"{name}-seed{seed}", seed, args.grpo_steps,
                                                         args.grpo_test_freq, estimator), workdir)
            curve = grpo_curve(result, trajectories_per_step)
            seed_curves.setdefault(name, []).append(curve)
            rows.setdefault(name, []).append(curve[-1])

    curves = {name: mean_curve(c) for name, c in seed_curves.items()}
    order = ["reference", "sft_uniform", "sft_rejection", "grpo", "grpo_turn", "drift"]
    rows = {name: rows[name] for name in order + [n for n in rows if n not in order]}
    for values in rows.values():
        for r in values:
            r.pop("step", None)
    comparison = drift_vs_grpo(rows, curves)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary(rows, args.seeds, curves), indent=1))
    (args.out / "comparison.json").write_text(json.dumps(
        {"command": command, "rows": rows, "grpo_curves": curves, "drift_vs_grpo": comparison}, indent=1))
    study = non_repeat_study(workdir, args.seeds[0], args.out)
    (args.out / "comparison.md").write_text(markdown(rows, args.seeds, command, comparison, study))
    plot(rows, curves, args.out / "comparison.png")
    print(markdown(rows, args.seeds, command, comparison, study))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

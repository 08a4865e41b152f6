"""The paper's comparison in miniature, on the embedded tiny task: reference policy, unweighted SFT,
rejection-sampling SFT, GRPO (same feedback agent loop, online) and DRIFT (with a beta and gamma sweep that
reuses one trajectory store), on the same prompts, reference policy and validation set.

    python scripts/compare.py --out docs/comparison [--seeds 0 1 2] [--grpo-steps 48] [--grpo-lrs 2e-3 5e-4]

DRIFT and the two SFT baselines run for every seed (mini-batch order); the beta/gamma sweep and GRPO run for the
first seed only, to keep the whole comparison near an hour on 2 cores.

Every run is a real ``python -m drift_verl.main`` job; finished runs are kept (``<workdir>/<run>/result.json``)
so an interrupted comparison resumes where it stopped. Writes ``<out>/comparison.md``, ``comparison.json`` and
PNG plots.
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


def drift_args(run_dir: Path, store: Path, seed: int, **drift) -> list[str]:
    overrides = {"seed": seed, "store_dir": store, **drift}
    return ["-m", "drift_verl.main", "recipe=drift", "platform=cpu", "trainer.logger=[console,file]",
            f"trainer.default_local_dir={run_dir / 'checkpoints'}", "trainer.save_freq=-1",
            *(f"drift.{key}={value}" for key, value in overrides.items())]


def grpo_args(run_dir: Path, seed: int, steps: int, test_freq: int, lr: float) -> list[str]:
    return ["-m", "drift_verl.main", "recipe=grpo", "platform=cpu", "trainer.logger=[console,file]",
            f"actor_rollout_ref.actor.optim.lr={lr:g}",
            f"trainer.default_local_dir={run_dir / 'checkpoints'}", "trainer.save_freq=-1",
            f"trainer.total_training_steps={steps}", f"trainer.test_freq={test_freq}", "trainer.total_epochs=100",
            f"data.seed={seed}", f"actor_rollout_ref.actor.data_loader_seed={seed}"]


def validation_points(metrics: dict[int, dict]) -> list[tuple[int, dict]]:
    return [(step, validation_summary(values)) for step, values in sorted(metrics.items())
            if any(key.startswith("val-core/") for key in values)]


def only_source(summary: dict) -> dict:
    return next(iter(summary.values())) if summary else {}


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


def drift_row(result: dict, rollout_cost: dict) -> dict:
    """Final validation; cost = the store's rollouts (shared by every run on that store) + this run's update."""
    metrics = by_step(result)
    points = validation_points(metrics)
    update_s = sum(v.get("drift/update/step_s", 0.0) for v in metrics.values())
    return {**only_source(points[-1][1]), "before": only_source(points[0][1]),
            "algorithm_s": rollout_cost["rollout_s"] + update_s, "rollout_tokens": rollout_cost["tokens"],
            "job_s": result["wall_s"]}


def rollout_cost(result: dict) -> dict:
    metrics = by_step(result)
    rollout = next(v for v in metrics.values() if "drift/rollout/wall_s" in v)
    return {"rollout_s": rollout["drift/rollout/wall_s"], "tokens": rollout["drift/rollout/response_tokens"]}


def grpo_curve(result: dict, trajectories_per_step: int) -> list[dict]:
    """Validation points with the cumulative step time and response tokens generated up to them."""
    metrics = by_step(result)
    curve, seconds, tokens = [], 0.0, 0.0
    for step in sorted(metrics):
        values = metrics[step]
        if step > 0:
            seconds += values.get("timing_s/step", 0.0)
            tokens += values.get("response_length/mean", 0.0) * trajectories_per_step
        if any(key.startswith("val-core/") for key in values):
            curve.append({"step": step, "algorithm_s": seconds, "rollout_tokens": tokens,
                          **only_source(validation_summary(values))})
    return curve


def to_reach(drift: dict, curve: list[dict]) -> str:
    """DRIFT vs GRPO: wall-clock and rollout tokens until validation solved-within-5 reaches DRIFT's final value."""
    target = drift["solved_within_5"]
    trained = [p for p in curve if p["step"] > 0]
    reached = next((p for p in trained if p["solved_within_5"] >= target), None)
    head = (f"To reach DRIFT's final solved-within-5 ({target:.3f}): DRIFT {drift['algorithm_s']:.0f} s, "
            f"{drift['rollout_tokens']:.0f} rollout tokens; ")
    if reached is None:
        last, best = curve[-1], max(p["solved_within_5"] for p in trained)
        return head + (f"GRPO did not reach it in {last['step']} steps ({last['algorithm_s']:.0f} s, "
                       f"{last['rollout_tokens']:.0f} tokens; best after training {best:.3f}).")
    return head + (f"GRPO {reached['algorithm_s']:.0f} s, {reached['rollout_tokens']:.0f} tokens (step "
                   f"{reached['step']}): DRIFT/GRPO wall-clock {drift['algorithm_s'] / reached['algorithm_s']:.2f}, "
                   f"tokens {drift['rollout_tokens'] / reached['rollout_tokens']:.2f}.")


def aggregate(rows: list[dict]) -> dict:
    """Mean and spread (population std; 0 with one seed) of every numeric field over seeds."""
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
    return {k: (statistics.fmean(r[k] for r in rows), statistics.pstdev(r[k] for r in rows)) for k in keys}


def markdown(table: dict[str, dict], seeds: list[int], command: str, reach: str) -> str:
    columns = [f"solved_within_{k}" for k in range(1, MAX_TURNS + 1)] + ["non_repeat_ratio"]
    header = ["method", *[f"solved≤{k}" for k in range(1, MAX_TURNS + 1)], "non-repeat", "wall-clock (s)",
              "rollout tokens"]
    lines = [f"Seeds: {', '.join(map(str, seeds))} (mean ± std over seeds). Command: `{command}`", "",
             "Validation: 16 held-out prompts x 16 trajectories at temperature 1, T=5. Wall-clock: rollouts + "
             "updates (DRIFT, SFT baselines) or the sum of step times (GRPO), start-up and validation excluded. "
             "Rollout tokens: response tokens generated for training (assistant turns and feedback messages, "
             "verl's response_length).", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, stats in table.items():
        cells = [name] + [_fmt(stats.get(c)) for c in columns]
        cells += [_fmt(stats.get("algorithm_s"), 0), _fmt(stats.get("rollout_tokens"), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", reach]) + "\n"


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


def plot(table: dict[str, dict], grpo: dict[str, list[dict]], drift_default: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    ks = list(range(1, MAX_TURNS + 1))
    for name, stats in table.items():
        if name.startswith("DRIFT (") and name != drift_default:
            continue  # the sweep is in the table; the plot keeps the main methods readable
        left.plot(ks, [stats[f"solved_within_{k}"][0] for k in ks], marker="o", label=name)
    left.set(xlabel="k (turns)", ylabel="solved within k", title="Validation: solved within k turns", xticks=ks)
    left.legend(fontsize=8)
    for lr, curve in grpo.items():
        right.plot([p["algorithm_s"] for p in curve], [p["solved_within_5"] for p in curve], marker=".",
                   alpha=0.7, label=f"GRPO lr={lr}")
    drift = table[drift_default]
    right.errorbar([drift["algorithm_s"][0]], [drift["solved_within_5"][0]], yerr=[drift["solved_within_5"][1]],
                   fmt="*", markersize=14, color="tab:blue", label=drift_default)
    reference = table["reference policy"]
    right.axhline(reference["solved_within_5"][0], color="gray", linestyle="--", label="reference policy")
    right.set(xlabel="algorithm wall-clock (s)", ylabel="solved within 5", title="Validation vs wall-clock")
    right.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/comparison"))
    parser.add_argument("--workdir", type=Path, default=Path("runs/compare"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--betas", type=float, nargs="*", default=[0.05, 1.0])
    parser.add_argument("--gammas", type=float, nargs="*", default=[0.5])
    parser.add_argument("--grpo-steps", type=int, default=48)
    parser.add_argument("--grpo-lrs", type=float, nargs="+", default=[2e-3, 5e-4],
                        help="GRPO learning rates (the task's 2e-3 first); the best run gives the GRPO rows")
    parser.add_argument("--grpo-test-freq", type=int, default=8)
    parser.add_argument("--grpo-trajectories-per-step", type=int, default=32, help="train_batch_size x rollout.n")
    args = parser.parse_args(argv)
    command = "python scripts/compare.py " + " ".join(argv if argv is not None else sys.argv[1:])
    workdir, store = args.workdir.resolve(), args.workdir.resolve() / "store"

    rows: dict[str, list[dict]] = {}
    grpo: dict[str, list[dict]] = {}
    drift_default = "DRIFT (γ=0.9, β=0.1)"
    for seed in args.seeds:
        # the store is made by the first DRIFT run and reused by every other weighting (rollouts are seed-free)
        first = run(f"drift-seed{seed}", drift_args(workdir / f"drift-seed{seed}", store, seed), workdir)
        cost = rollout_cost(first) if seed == args.seeds[0] else cost
        rows.setdefault(drift_default, []).append(drift_row(first, cost))
        rows.setdefault("reference policy", []).append({**rows[drift_default][-1]["before"], "algorithm_s": 0.0,
                                                        "rollout_tokens": 0.0})
        variants = {"unweighted SFT (w=1)": {"weighting": "uniform"},
                    "rejection-sampling SFT": {"weighting": "rejection"}}
        if seed == args.seeds[0]:  # the sweep and GRPO: first seed only (time)
            variants.update({f"DRIFT (γ=0.9, β={b:g})": {"beta": b} for b in args.betas})
            variants.update({f"DRIFT (γ={g:g}, β=0.1)": {"gamma": g} for g in args.gammas})
            variants["DRIFT, all assistant turns"] = {"train_turns": "all"}
        for label, options in variants.items():
            name = "-".join(f"{k}{v}" for k, v in options.items()) + f"-seed{seed}"
            result = run(name, drift_args(workdir / name, store, seed, **options), workdir)
            rows.setdefault(label, []).append(drift_row(result, cost))
        if seed != args.seeds[0]:
            continue
        for lr in args.grpo_lrs:
            name = f"grpo-lr{lr:g}-seed{seed}"
            result = run(name, grpo_args(workdir / name, seed, args.grpo_steps, args.grpo_test_freq, lr), workdir)
            grpo[f"{lr:g}"] = grpo_curve(result, args.grpo_trajectories_per_step)
        best_lr = max(grpo, key=lambda lr: max(p["solved_within_5"] for p in grpo[lr] if p["step"] > 0))
        budget = rows[drift_default][-1]["algorithm_s"]
        within = [p for p in grpo[best_lr] if p["algorithm_s"] <= budget] or grpo[best_lr][:1]
        rows.setdefault(f"GRPO (lr={best_lr}), DRIFT's wall-clock", []).append(within[-1])
        for lr, curve in grpo.items():
            trained = [p for p in curve if p["step"] > 0]  # step 0 is the reference policy
            rows.setdefault(f"GRPO (lr={lr}), best", []).append(max(trained, key=lambda p: p["solved_within_5"]))

    order = ["reference policy", "unweighted SFT (w=1)", "rejection-sampling SFT",
             *(name for name in rows if name.startswith("GRPO")), drift_default]
    order += [name for name in rows if name not in order]
    table = {name: aggregate(rows[name]) for name in order}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.json").write_text(json.dumps({"command": command, "rows": rows, "grpo": grpo}, indent=1))
    reach = to_reach(rows[drift_default][0], grpo[best_lr])  # first seed: the one GRPO ran with
    (args.out / "comparison.md").write_text(markdown(table, args.seeds, command, reach))
    plot(table, grpo, drift_default, args.out / "comparison.png")
    print(markdown(table, args.seeds, command, reach))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

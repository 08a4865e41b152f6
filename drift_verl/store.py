"""Look at a trajectory store before paying for training::

    python -m drift_verl.store inspect DIR [--gamma G] [--beta B [B ...]] [--weights OUT.jsonl] [--plot PNG] [--json]

``DIR`` is a store's folder (``<drift.store_dir>/<fingerprint>``, printed by a DRIFT run). Prints the store's
size, the reference policy's multi-turn metrics and, for each beta, the weight diagnostics a run with those
settings would log in phase 2 (ESS, degenerate and all-fail groups, max weight): a beta sweep over a store takes
seconds, which is how to pick beta. With one beta it also writes the weight/ESS plot and, with ``--weights``, one
JSON line per trajectory (``prompt_id``, ``sample``, ``return``, ``weight``), in store order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from drift_verl.core import plots
from drift_verl.core.diagnostics import weigh
from drift_verl.core.safe_io import OutputOverInput, atomic_path, refuse_overwriting
from drift_verl.core.store import StoreError, TrajectoryStore, returns_and_groups
from drift_verl.core.weights import REPETITION_COEF, WeightConfig, WeightInputError
from drift_verl.integration.report import rollout_quality


def inspect(store: TrajectoryStore, configs: list[WeightConfig]) -> tuple[dict, np.ndarray, np.ndarray, list]:
    """The store's size, its reference policy's metrics and the weight diagnostics per config (all with one gamma
    and repetition coefficient: the returns are computed once); and, in store order, the returns, the groups and
    each config's weights."""
    spec = store.spec
    store.verify(int(spec["n"]))
    metrics, logged = rollout_quality(store, int(spec["env"]["max_turns"]))
    size = {"trajectories": logged["drift/rollout/trajectories"], "prompts": store.num_prompts,
            "samples_per_prompt": int(spec["n"]), "shards": store.num_shards,
            "generated_tokens": logged["drift/rollout/generated_tokens"]}
    returns, groups, solved = returns_and_groups(store, configs[0].gamma, configs[0].repetition_coef)
    rows, all_weights = [], []
    for config in configs:
        weights, stats = weigh(returns, groups, solved, config)
        stats.pop("weights/histogram")
        rows.append({"gamma": config.gamma, "beta": config.beta,
                     **{k.removeprefix("weights/"): v for k, v in stats.items()}})
        all_weights.append(weights)
    report = {"store": str(store.dir), "size": size, "reference": metrics, "weights": rows}
    return report, returns, groups, all_weights


def write_weights(store: TrajectoryStore, returns, weights, out: Path) -> None:
    """One JSON line per trajectory, in store order, streamed shard by shard."""
    index = 0
    with atomic_path(out) as tmp, open(tmp, "w") as handle:
        for table in store.iter_columns(["prompt_id", "sample"]):
            for prompt_id, sample in zip(*table.to_pydict().values()):
                handle.write(json.dumps({"prompt_id": prompt_id, "sample": sample, "return": float(returns[index]),
                                         "weight": float(weights[index])}) + "\n")
                index += 1


def _print(report: dict) -> None:
    size = report["size"]
    print(f"store {report['store']}: {size['trajectories']} trajectories ({size['prompts']} prompts x "
          f"{size['samples_per_prompt']}) in {size['shards']} shards, {size['generated_tokens']} generated tokens")
    shown = {k: v for k, v in report["reference"].items() if k.startswith("solved_within_") or k == "non_repeat_ratio"}
    print("reference policy: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
    print(f"{'gamma':>6} {'beta':>7} {'ESS frac':>9} {'ESS min':>8} {'degenerate':>11} {'all-fail':>9} {'max w':>8}")
    for row in report["weights"]:
        print(f"{row['gamma']:>6g} {row['beta']:>7g} {row['ess_fraction_mean']:>9.3f} {row['ess_fraction_min']:>8.3f} "
              f"{row['degenerate_group_share']:>11.2%} {row['all_fail_group_share']:>9.2%} {row['max']:>8.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drift_verl.store", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspect_cmd = commands.add_parser("inspect", help="size, reference metrics and weight diagnostics of a store")
    inspect_cmd.add_argument("store", type=Path, help="the store's folder, <drift.store_dir>/<fingerprint>")
    inspect_cmd.add_argument("--gamma", type=float, default=0.9)
    inspect_cmd.add_argument("--beta", type=float, nargs="+", default=[0.1], help="one or more (a sweep)")
    inspect_cmd.add_argument("--repetition-coef", type=float, default=REPETITION_COEF)
    inspect_cmd.add_argument("--normalization", choices=("group", "batch"), default="group")
    inspect_cmd.add_argument("--cap", type=float, default=None)
    inspect_cmd.add_argument("--weights", type=Path, help="JSON lines: prompt_id, sample, return, weight (one beta)")
    inspect_cmd.add_argument("--plot", type=Path, help="weight/ESS plot (one beta; default: ./weights_<fingerprint>.png)")
    inspect_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        configs = [WeightConfig(args.gamma, beta, args.repetition_coef, args.normalization, args.cap)
                   for beta in args.beta]
        if (args.weights or args.plot) and len(configs) > 1:
            raise WeightInputError("--weights and --plot take one --beta")
        store = TrajectoryStore.open(args.store)
        plot = args.plot or Path(f"weights_{store.dir.name}.png")
        store_files = [store.dir / "manifest.json", *map(store.shard_path, range(store.num_shards))]
        for output in (args.weights, plot):
            if output:
                refuse_overwriting(output, store_files)
        report, returns, groups, weights = inspect(store, configs)
        if len(configs) == 1:
            report["plot"] = str(plots.weight_plots(weights[0], groups, plot).resolve())
            if args.weights:
                write_weights(store, returns, weights[0], args.weights)
    except (StoreError, WeightInputError, OutputOverInput, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
        if "plot" in report:
            print(f"plot: {report['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

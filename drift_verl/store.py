"""Look at a trajectory store before paying for training, or make one from trajectories made elsewhere::

    python -m drift_verl.store inspect DIR [--gamma G] [--beta B [B ...]] [--weights OUT.jsonl] [--plot PNG] [--json]
    python -m drift_verl.store import IN.jsonl|IN.parquet|DATASET_DIR --model PATH --out DIR

``DIR`` is a store's folder (``<drift.store_dir>/<fingerprint>``, printed by a DRIFT run). Prints the store's
size, the reference policy's multi-turn metrics and, for each beta, the weight diagnostics a run with those
settings would log in phase 2 (ESS, degenerate and all-fail groups, max weight): a beta sweep over a store takes
seconds, which is how to pick beta. With one beta it also writes the weight/ESS plot and, with ``--weights``, one
JSON line per trajectory (``prompt_id``, ``sample``, ``return``, ``weight``), in store order.

``import`` reads rows in the paper reference implementation's format (``prompt_id``, ``turn_rewards``,
``answer_norms``, ``format_penalty``, ``messages``) and tokenises them with the policy's tokenizer as the feedback
agent loop would (:mod:`drift_verl.integration.training.store_import`); it prints the store's folder, to train from with
``drift.phases=[weights,update] drift.store=<folder>``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from drift_verl.core import plots
from drift_verl.core.config import ConfigError, WeightConfig
from drift_verl.core.weights import WeightInputError, weigh
from drift_verl.core.safe_io import OutputOverInput, atomic_path, refuse_overwriting
from drift_verl.core.store import StoreError, TrajectoryStore, broken_trajectories, returns_and_groups
from drift_verl.integration.training.report import rollout_quality
from drift_verl.weights import add_weight_arguments, weight_configs

MAX_LISTED = 20  # skipped rows printed one by one; the rest are counted


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
    returns, groups, solved = returns_and_groups(store, configs[0].gamma, configs[0].repetition_coef,
                                                 configs[0].partial_credit)
    broken = broken_trajectories(store)
    size.update({"schema_version": store.schema_version, "broken_trajectories": int(broken.sum()),
                 "agent_loop": store.agent_loop, "absent_fields": list(store.absent_fields)})
    rows, all_weights = [], []
    for config in configs:
        weights, stats = weigh(returns, groups, solved, config, broken)
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
          f"{size['samples_per_prompt']}) in {size['shards']} shards, {size['generated_tokens']} generated tokens; "
          f"{size['broken_trajectories']} broken by the environment (weight 0); store schema version "
          f"{size['schema_version']}")
    if size["absent_fields"]:
        print(f"rolled out by agent loop {size['agent_loop']}, which does not record: "
              f"{', '.join(size['absent_fields'])} (placeholders, never used as data)")
    shown = {k: v for k, v in report["reference"].items()
             if k.startswith("solved_within_") or k in ("non_repeat_ratio", "solved", "mean_reward")}
    print("reference policy: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
    print(f"{'gamma':>6} {'beta':>7} {'ESS frac':>9} {'ESS min':>8} {'degenerate':>11} {'all-fail':>9} {'max w':>8}")
    for row in report["weights"]:
        print(f"{row['gamma']:>6g} {row['beta']:>7g} {row['ess_fraction_mean']:>9.3f} {row['ess_fraction_min']:>8.3f} "
              f"{row['degenerate_group_share']:>11.2%} {row['all_fail_group_share']:>9.2%} {row['max']:>8.2f}")


def _import(args) -> int:
    from drift_verl.integration.training.store_import import import_store

    kwargs = json.loads(args.chat_template_kwargs) if args.chat_template_kwargs else None
    template = args.chat_template.read_text() if args.chat_template else None
    report = import_store(args.input, args.model, args.out, chat_template=template, chat_template_kwargs=kwargs,
                          samples_per_prompt=args.samples_per_prompt, prompts_per_shard=args.prompts_per_shard,
                          data_source=args.data_source, reference=args.reference)
    for skipped in (report.bad_rows, report.incomplete_groups):
        for line in skipped[:MAX_LISTED]:
            print(f"skipped: {line}", file=sys.stderr)
        if len(skipped) > MAX_LISTED:
            print(f"skipped: ... and {len(skipped) - MAX_LISTED} more", file=sys.stderr)
    skips = f"skipped {len(report.bad_rows)} bad row(s) and {len(report.incomplete_groups)} incomplete group(s)"
    if report.store is None:
        print(f"error: {args.input}: nothing to import ({skips})", file=sys.stderr)
        return 2
    store = report.store
    print(f"imported {report.trajectories} trajectories ({store.num_prompts} prompts x {store.spec['n']}) into "
          f"{store.dir}; {skips}")
    print(f"train on it: python -m drift_verl.main recipe=drift drift.phases=[weights,update] drift.store={store.dir} "
          f"actor_rollout_ref.model.path={args.model}  (with data.max_prompt_length and data.max_response_length at "
          f"least the store's longest, {store.spec['lengths'][0]} and {store.spec['lengths'][1]} tokens)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drift_verl.store", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspect_cmd = commands.add_parser("inspect", help="size, reference metrics and weight diagnostics of a store")
    inspect_cmd.add_argument("store", type=Path, help="the store's folder, <drift.store_dir>/<fingerprint>")
    add_weight_arguments(inspect_cmd, beta_sweep=True)
    inspect_cmd.add_argument("--weights", type=Path, help="JSON lines: prompt_id, sample, return, weight (one beta)")
    inspect_cmd.add_argument("--plot", type=Path, help="weight/ESS plot (one beta; default: ./weights_<fingerprint>.png)")
    inspect_cmd.add_argument("--json", action="store_true", help="print the report as JSON")
    import_cmd = commands.add_parser("import", help="make a store from reference-format trajectories")
    import_cmd.add_argument("input", type=Path, help="JSONL, parquet, or a datasets folder (save_to_disk)")
    import_cmd.add_argument("--model", required=True, help="the policy to train (its tokenizer and chat template)")
    import_cmd.add_argument("--out", type=Path, required=True, help="stores folder (as drift.store_dir)")
    import_cmd.add_argument("--chat-template", type=Path, help="a custom chat template file (model.custom_chat_template)")
    import_cmd.add_argument("--chat-template-kwargs", help="JSON, as data.apply_chat_template_kwargs")
    import_cmd.add_argument("--samples-per-prompt", type=int, help="N (default: the most common group size)")
    import_cmd.add_argument("--prompts-per-shard", type=int, default=16)
    import_cmd.add_argument("--data-source", default="imported", help="for rows without a data_source field")
    import_cmd.add_argument("--reference", help="the reference policy that made them, recorded in the manifest")
    args = parser.parse_args(argv)
    if args.command == "import":
        try:
            return _import(args)
        except (StoreError, WeightInputError, ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    try:
        configs = weight_configs(args)
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
    except (ConfigError, StoreError, WeightInputError, OutputOverInput, OSError) as error:
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

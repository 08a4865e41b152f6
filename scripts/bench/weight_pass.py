"""Benchmark DRIFT's weight pass (phase 2) at scale: returns, weights and diagnostics over synthetic stores.

Builds trajectory stores in the trainer's format (``drift_verl.core.store.SCHEMA`` parquet shards + manifest) of
10^5, 10^6 and 10^7 trajectories (16 per prompt, up to 5 turns, a realistic mix of first-turn solves, fixes
after feedback, repeated wrong answers and unparseable turns; the token columns are left empty since phase 2
never reads them), cached under ``--workdir``; building them is not measured. Then, for each size, a fresh
Python process runs exactly the trainer's phase 2 computation, streamed shard by shard::

    returns, groups, solved = store.returns_and_groups(store, gamma, repetition_coef)
    weights = weights.group_weights(returns, weights.group_codes(groups), config)
    stats = weights.diagnostics(weights, groups, solved)

and the parent records the pass's wall time (measured in the child, imports excluded) and the child's peak
resident memory (``ru_maxrss`` from ``os.wait4``: the whole process, interpreter and imports included).
The last lines printed are the ratios against the targets (10^7 in < 60 s and < 2 GB).

    python scripts/bench/weight_pass.py                      # 1e5, 1e6, 1e7
    python scripts/bench/weight_pass.py --smoke              # CI: a 10^4 store in a temporary folder
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_S = {10**7: 60.0}
TARGET_BYTES = {10**7: 2 * 10**9}
MAX_TURNS = 5


# ---------------------------------------------------------------- synthetic stores
def _store(workdir: Path, size: int, group_size: int, prompts_per_shard: int):
    from drift_verl.core.store import TrajectoryStore

    spec = {"synthetic_weight_pass": 1, "trajectories": size, "group_size": group_size, "seed": 0}
    folder = workdir / f"store-{size:.0e}-g{group_size}-s{prompts_per_shard}".replace("+", "")
    return TrajectoryStore(folder, spec, size // group_size, prompts_per_shard)


def _shard_table(prompts: range, group_size: int, rng: np.random.Generator):
    """One shard's trajectories, built column-wise from numpy arrays (no per-row Python)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from drift_verl.core.store import SCHEMA

    num_prompts = len(prompts)
    rows = num_prompts * group_size
    prompt_of = np.repeat(np.arange(num_prompts), group_size)
    # per prompt: a first-turn solve rate (many prompts are easy or hopeless) and its answer
    solve_rate = rng.beta(0.6, 0.9, size=num_prompts)[prompt_of]
    truth = rng.integers(0, 1000, size=num_prompts)
    # per turn: solved (less likely after each failure), unparseable, or one of 3 wrong answers per prompt
    turn_rate = solve_rate[:, None] * 0.7 ** np.arange(MAX_TURNS)[None, :]
    correct = rng.random((rows, MAX_TURNS)) < turn_rate
    unparsed = ~correct & (rng.random((rows, MAX_TURNS)) < 0.05)
    wrong = truth[prompt_of][:, None] + rng.choice([-1, 1, 10], size=(rows, MAX_TURNS))
    answer = np.where(correct, truth[prompt_of][:, None], wrong)
    first = np.where(correct.any(axis=1), correct.argmax(axis=1) + 1, 0)  # t_star
    lengths = np.where(first > 0, first, MAX_TURNS)
    taken = np.arange(MAX_TURNS)[None, :] < lengths[:, None]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    rewards = pa.array(correct[taken].astype(np.float32))
    answers = pa.array(answer[taken], mask=unparsed[taken]).cast(pa.string())

    def repeated(values: pa.Array, index: np.ndarray) -> pa.Array:
        return values.take(pa.array(index))

    empty = np.zeros(rows + 1, dtype=np.int32)
    numbers = pa.array(np.arange(prompts.start, prompts.stop)).cast(pa.string())
    names = pc.binary_join_element_wise("prompt-", numbers, "")
    columns = {
        "prompt_id": repeated(names, prompt_of),
        "sample": pa.array(np.tile(np.arange(group_size, dtype=np.int32), num_prompts)),
        "data_source": repeated(pa.array(["synthetic"]), np.zeros(rows, dtype=np.int64)),
        "ground_truth": repeated(pa.array(truth).cast(pa.string()), prompt_of),
        "prompt_ids": pa.ListArray.from_arrays(empty, pa.array([], pa.int32())),
        "response_ids": pa.ListArray.from_arrays(empty, pa.array([], pa.int32())),
        "response_mask": pa.ListArray.from_arrays(empty, pa.array([], pa.int8())),
        "turn_spans": pa.ListArray.from_arrays(empty, pa.array([], pa.list_(pa.int32()))),
        "turn_rewards": pa.ListArray.from_arrays(offsets, rewards),
        "answers": pa.ListArray.from_arrays(offsets, answers),
        "format_penalty": pa.array((-0.1 * (unparsed & taken).sum(axis=1)).astype(np.float32)),
        "t_star": pa.array(first.astype(np.int32)),
        "verifier_failures": pa.array(np.zeros(rows, dtype=np.int32)),
        "messages": repeated(pa.array([""]), np.zeros(rows, dtype=np.int64)),
        "environment_failure": pa.nulls(rows, pa.string()),
    }
    return pa.Table.from_arrays([columns[name] for name in SCHEMA.names], schema=SCHEMA)


def build_store(workdir: Path, size: int, group_size: int, prompts_per_shard: int):
    """The store of ``size`` trajectories, building only its missing shards (a killed build resumes)."""
    store = _store(workdir, size, group_size, prompts_per_shard)
    missing = store.missing_shards()
    if missing:
        start = time.time()
        print(f"building a store of {size:.0e} trajectories ({len(missing)} shards) in {store.dir}", flush=True)
        for index in missing:
            store.write_table(index, _shard_table(store.shard_prompts(index), group_size,
                                                  np.random.default_rng([size, index])))
        print(f"  built in {time.time() - start:.1f} s", flush=True)
    return store


# ---------------------------------------------------------------- the measured pass (a fresh process per size)
def child(args) -> None:
    try:
        import pandas  # noqa: F401  pyarrow imports it on the first parquet read; a trainer has it loaded already
    except ImportError:
        pass

    from drift_verl.core.store import returns_and_groups
    from drift_verl.core.weights import diagnostics
    from drift_verl.core.config import WeightConfig
    from drift_verl.core.weights import group_codes, group_weights

    store = _store(Path(args.workdir), args.child, args.group_size, args.prompts_per_shard)
    config = WeightConfig()  # the drift: defaults
    start = time.perf_counter()
    returns, groups, solved = returns_and_groups(store, config.gamma, config.repetition_coef)
    read_s = time.perf_counter() - start
    groups = group_codes(groups)
    weights = group_weights(returns, groups, config)
    stats = diagnostics(weights, groups, solved)
    wall = time.perf_counter() - start
    assert weights.size == args.child and abs(stats["weights/mean"] - 1.0) < 1e-6, stats
    print(json.dumps({"wall_s": wall, "returns_s": read_s, "shards": store.num_shards,
                      "ess_fraction_mean": stats["weights/ess_fraction_mean"],
                      "all_fail_group_share": stats["weights/all_fail_group_share"],
                      "return_mean": float(returns.mean())}))


def measure(script: str, args, size: int) -> dict:
    argv = [sys.executable, script, "--child", str(size), "--workdir", args.workdir,
            "--group-size", str(args.group_size), "--prompts-per-shard", str(args.prompts_per_shard)]
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        process_s = time.perf_counter() - started
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise SystemExit(f"weight pass on {size:.0e} trajectories failed (exit {proc.returncode}):\n{text}")
    result = json.loads(text.strip().splitlines()[-1])
    result.update(size=size, process_s=process_s, peak_bytes=usage.ru_maxrss * 1024)  # ru_maxrss: KiB on Linux
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6,1e7", help="comma-separated trajectory counts")
    parser.add_argument("--workdir", default="/tmp/drift_bench", help="where the synthetic stores are cached")
    parser.add_argument("--group-size", type=int, default=16, help="trajectories per prompt")
    parser.add_argument("--prompts-per-shard", type=int, default=1024)
    parser.add_argument("--smoke", action="store_true", help="CI: one 10^4 store in a temporary folder")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        child(args)
        return 0
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    cleanup = None
    if args.smoke:
        sizes, cleanup = [10**4], tempfile.mkdtemp(prefix="drift_bench_smoke_")
        args.workdir, args.prompts_per_shard = cleanup, 64
    try:
        for size in sizes:
            build_store(Path(args.workdir), size, args.group_size, args.prompts_per_shard)
        results = [measure(os.path.abspath(__file__), args, size) for size in sizes]
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    print(f"\nweight pass: returns + weights + diagnostics, {args.group_size} trajectories per prompt, "
          f"{args.prompts_per_shard} prompts per shard")
    print(f"{'trajectories':>12} {'shards':>7} {'pass s':>8} {'returns s':>9} {'process s':>9} "
          f"{'peak MB':>8} {'traj/s':>11}")
    for r in results:
        print(f"{r['size']:>12.0e} {r['shards']:>7} {r['wall_s']:>8.2f} {r['returns_s']:>9.2f} {r['process_s']:>9.2f} "
              f"{r['peak_bytes'] / 1e6:>8.0f} {r['size'] / r['wall_s']:>11.3g}")
    for r in results:  # the ratio lines last; sizes without a target are scaled to 10^7's (linear in rows)
        scale = 10**7 / r["size"]
        target_s, target_b = TARGET_S.get(r["size"], 60.0 / scale), TARGET_BYTES.get(r["size"], 2e9)
        print(f"{r['size']:.0e}: {r['wall_s']:.2f} s (target {target_s:.3g} s) ratio {r['wall_s'] / target_s:.2f}; "
              f"peak {r['peak_bytes'] / 1e9:.2f} GB (target {target_b / 1e9:.3g} GB) ratio "
              f"{r['peak_bytes'] / target_b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Verifier calls/s through the isolating worker pool (drift_verl.integration.verifier) against plain in-process calls.

The feedback loop verifies every turn of every trajectory through the pool; this measures what the isolation
costs per call, with the agent loop's concurrency (many coroutines handing calls to executor threads). Arms
alternate (inline, pool, pool, inline, ...); the median ratio pool/inline of calls/s is printed last.

    python scripts/bench/verifier.py                 # reward_fns.exact and reward_fns.math, 3 pairs
    python scripts/bench/verifier.py --calls 500 --pairs 1
    python scripts/bench/verifier.py --smoke          # CI: 40 calls, one pair
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

CASES = {  # verifier -> (answer text, gold) pairs, right and wrong
    "pkg://reward_fns.exact": [("<answer>12</answer>", "12"), ("<answer>13</answer>", "12")],
    "pkg://reward_fns.math": [("<answer>\\frac{1}{2}</answer>", "0.5"), ("<answer>x^2+1</answer>", "(x+1)^2")],
}


async def _run(call, calls: int, concurrency: int) -> float:
    """calls/s of ``call(i)`` run in executor threads, ``concurrency`` at a time (as the agent loop does)."""
    loop, gate = asyncio.get_running_loop(), asyncio.Semaphore(concurrency)

    async def one(i):
        async with gate:
            await loop.run_in_executor(None, call, i)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return calls / (time.perf_counter() - start)


def _rate(arms: dict, name: str, calls: int, concurrency: int) -> float:
    """calls/s of one arm. The inline arm runs as inside a worker (reward_fns.math's isolated() runs inline): the
    flag is set once around the whole arm, since threads setting and removing it per call race each other."""
    from drift_verl.integration.verifier import IN_WORKER_ENV

    if name == "inline":
        os.environ[IN_WORKER_ENV] = "1"
    try:
        return asyncio.run(_run(arms[name], calls, concurrency))
    finally:
        os.environ.pop(IN_WORKER_ENV, None)


def main() -> None:
    from drift_verl.integration.verifier import VerifierPool, load_function

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="drift.env.verifier_workers")
    parser.add_argument("--smoke", action="store_true", help="40 calls, one pair (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.pairs = 40, 1
    pool = VerifierPool(size=args.workers)
    for path, cases in CASES.items():
        fn = load_function(path, "compute_score")
        arms = {
            "inline": lambda i, fn=fn, cases=cases: fn("bench", *cases[i % len(cases)]),
            "pool": lambda i, path=path, cases=cases: pool.call(path, "compute_score", ("bench", *cases[i % len(cases)]),
                                                                 {}, 10.0),
        }
        for name in arms:  # warm up: worker start, verifier import, caches
            _rate(arms, name, 20, args.concurrency)
        rates: dict[str, list[float]] = {"inline": [], "pool": []}
        for pair in range(args.pairs):
            for name in ("inline", "pool") if pair % 2 == 0 else ("pool", "inline"):
                rates[name].append(_rate(arms, name, args.calls, args.concurrency))
        ratios = [p / i for p, i in zip(rates["pool"], rates["inline"])]
        print(f"{path}: inline {statistics.median(rates['inline']):.0f} calls/s, pool "
              f"{statistics.median(rates['pool']):.0f} calls/s ({args.workers} workers); ratio pool/inline median "
              f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})", flush=True)
    pool.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # reward_fns/ when run from a checkout
    main()

"""Is the fall in non-repeat selection or collapse? Every policy answers turn 2 of the SAME conversations
(:mod:`drift_verl.eval.non_repeat` says how the contexts are chosen and what is counted)::

    python scripts/non_repeat.py --store STORE_DIR --model reference=PATH --model drift=PATH ... \
        [--contexts 512] [--samples 4] [--out docs/comparison/non_repeat.json]

``PATH`` is a Hugging Face folder with weights (a checkpoint's ``actor/huggingface`` saved with
``actor.checkpoint.save_contents`` including ``hf_model``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from drift_verl.core.store import StoreError, TrajectoryStore
from drift_verl.eval.non_repeat import CONTEXTS, MAX_NEW_TOKENS, SAMPLES, fixed_contexts, measure, second_answers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="the reference policy's trajectory store")
    parser.add_argument("--model", action="append", required=True, help="NAME=HF_FOLDER (repeat)")
    parser.add_argument("--contexts", type=int, default=CONTEXTS)
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS,
                        help="the task's drift.env.turn_max_tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        contexts = fixed_contexts(TrajectoryStore.open(args.store), args.contexts)
    except (StoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not contexts:
        print(f"error: {args.store}: no trajectory with a parseable wrong first answer", file=sys.stderr)
        return 2
    results = {"contexts": len(contexts), "samples_per_context": args.samples, "store": str(args.store), "models": {}}
    for spec in args.model:
        name, _, folder = spec.partition("=")
        answers = second_answers(folder, contexts, args.samples, args.max_new_tokens, args.seed)
        results["models"][name] = {"path": folder, **measure(contexts, answers, args.samples)}
        print(name, json.dumps(results["models"][name]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

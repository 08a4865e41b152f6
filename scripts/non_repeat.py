"""Is the fall in non-repeat selection or collapse? Every policy answers turn 2 of the SAME conversations.

Validation's non-repeat (answers after feedback that differ from every earlier answer) is measured on whichever
conversations reach turn 2 under each policy: a policy that solves the easy prompts at turn 1 leaves only hard
ones for turn 2, so its non-repeat can fall with no change in how it retries (selection). Here the contexts are
fixed: the reference policy's trajectories from a store whose first answer was parseable and wrong, cut just
before turn 2 (first answer + the environment's "Incorrect" + the assistant header). Each policy samples its
second answer there, and we count how often it repeats the rejected first answer (collapse) and how often it is
right::

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

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from drift_verl.core.answers import get_parser, normalize
from drift_verl.core.store import TrajectoryStore


def fixed_contexts(store: TrajectoryStore, limit: int) -> list[dict]:
    """The first ``limit`` trajectories (store order) whose turn 1 was answered and wrong, as turn-2 contexts."""
    contexts = []
    columns = ["prompt_ids", "response_ids", "turn_spans", "answers", "turn_rewards", "ground_truth"]
    for table in store.iter_columns(columns):
        for row in table.to_pylist():
            if len(row["turn_spans"]) >= 2 and row["answers"][0] is not None and row["turn_rewards"][0] < 1:
                start = row["turn_spans"][1][0]
                contexts.append({"ids": row["prompt_ids"] + row["response_ids"][:start], "first": row["answers"][0],
                                 "truth": normalize(row["ground_truth"])})
                if len(contexts) == limit:
                    return contexts
    return contexts


@torch.no_grad()
def second_answers(model_dir: str, contexts: list[dict], samples: int, max_new_tokens: int, seed: int,
                   batch: int = 64) -> list[str | None]:
    """``samples`` sampled (temperature 1) second answers per context, parsed and normalised (None: unparseable)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    parse = get_parser("answer")
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    answers = []
    requests = [c["ids"] for c in contexts for _ in range(samples)]
    for start in range(0, len(requests), batch):
        chunk = requests[start:start + batch]
        width = max(map(len, chunk))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in chunk])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in chunk])
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id)
        for row in out[:, width:]:
            answer = parse(tokenizer.decode(row, skip_special_tokens=True))
            answers.append(None if answer is None else normalize(answer))
    return answers


def measure(contexts: list[dict], answers: list[str | None], samples: int) -> dict:
    firsts = [c["first"] for c in contexts for _ in range(samples)]
    truths = [c["truth"] for c in contexts for _ in range(samples)]
    given = [(a, f, t) for a, f, t in zip(answers, firsts, truths) if a is not None]
    return {"second_answers": len(answers), "parseable": len(given) / len(answers),
            "non_repeat": sum(a != f for a, f, _ in given) / max(len(given), 1),
            "correct": sum(a == t for a, _, t in given) / len(answers)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="the reference policy's trajectory store")
    parser.add_argument("--model", action="append", required=True, help="NAME=HF_FOLDER (repeat)")
    parser.add_argument("--contexts", type=int, default=512)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=24, help="the task's drift.env.turn_max_tokens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    contexts = fixed_contexts(TrajectoryStore.open(args.store), args.contexts)
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

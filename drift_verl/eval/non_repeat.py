"""Non-repeat on fixed contexts: does a policy repeat an answer the environment has just rejected?

Validation's ``non_repeat_ratio`` (answers after feedback that differ from every earlier answer) is measured on
whichever conversations reach turn 2 under each policy. A policy that solves the easy problems at turn 1 leaves
only hard ones for turn 2, so that ratio can fall with no change in how the policy retries (selection). Here
the contexts are fixed: the reference policy's trajectories from a store whose first answer was parseable and
wrong, cut just before turn 2 (first answer, the environment's feedback, the assistant header). Each policy
samples its second answer there (temperature 1), and we count how often it repeats the rejected first answer
and how often it is right. Every policy sees the same contexts, so two policies' rates are paired by context.

Used by the end-of-run summary of a DRIFT job (``drift.non_repeat_contexts``) and by ``scripts/non_repeat.py``.
Generation runs with transformers on the calling process's CPU: meant for small policies (the embedded task's).
"""

from __future__ import annotations

import statistics

import torch

from drift_verl.core.answers import get_parser, normalize
from drift_verl.core.stats import paired_ci
from drift_verl.core.store import TrajectoryStore

SAMPLES = 4  # second answers sampled per context
CONTEXTS = 512  # fixed contexts a comparison measures (scripts/non_repeat.py, scripts/compare.py)
MAX_NEW_TOKENS = 24  # a second answer's length cap: the tiny task's drift.env.turn_max_tokens
CONTEXT_COLUMNS = ["prompt_ids", "response_ids", "turn_spans", "answers", "turn_rewards", "ground_truth"]


def fixed_contexts(store: TrajectoryStore, limit: int) -> list[dict]:
    """The first ``limit`` trajectories (store order) whose turn 1 was answered and wrong, as turn-2 contexts:
    ``ids`` (prompt and response up to turn 2's first token), ``first`` (the rejected answer), ``truth``.
    A store of another agent loop than drift_feedback records no answers: ValueError, saying so."""
    if store.absent_fields:
        raise ValueError(f"{store.dir}: rolled out by agent loop {store.agent_loop}, which records no answers: "
                         "there is no rejected first answer to repeat")
    contexts = []
    for table in store.iter_columns(CONTEXT_COLUMNS):
        for row in table.to_pylist():
            if len(row["turn_spans"]) >= 2 and row["answers"][0] is not None and row["turn_rewards"][0] < 1:
                start = row["turn_spans"][1][0]
                contexts.append({"ids": row["prompt_ids"] + row["response_ids"][:start], "first": row["answers"][0],
                                 "truth": normalize(row["ground_truth"])})
                if len(contexts) == limit:
                    return contexts
    return contexts


@torch.no_grad()
def second_answers(model_dir: str, contexts: list[dict], samples: int = SAMPLES,
                   max_new_tokens: int = MAX_NEW_TOKENS, seed: int = 0, answer_format: str = "answer",
                   batch: int = 64) -> list[str | None]:
    """``samples`` sampled second answers per context (context-major), parsed and normalised (None: unparseable).
    ``model_dir``: a Hugging Face folder with weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    parse = get_parser(answer_format)
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


def repeats_by_context(contexts: list[dict], answers: list[str | None], samples: int) -> list[float]:
    """Per context, the share of its ``samples`` second answers that repeat the rejected first one (an unparseable
    answer repeats nothing): the unit two policies are paired on."""
    return [sum(a == context["first"] for a in answers[i * samples:(i + 1) * samples]) / samples
            for i, context in enumerate(contexts)]


def measure(contexts: list[dict], answers: list[str | None], samples: int) -> dict:
    """Parseable share, non-repeat among parseable second answers, and correct share of all of them."""
    firsts = [c["first"] for c in contexts for _ in range(samples)]
    truths = [c["truth"] for c in contexts for _ in range(samples)]
    given = [(a, f, t) for a, f, t in zip(answers, firsts, truths) if a is not None]
    return {"second_answers": len(answers), "parseable": len(given) / len(answers),
            "non_repeat": sum(a != f for a, f, _ in given) / max(len(given), 1),
            "correct": sum(a == t for a, _, t in given) / len(answers)}


def compare(store: TrajectoryStore, before: str, after: str, limit: int, max_new_tokens: int,
            answer_format: str = "answer", seed: int = 0) -> dict | None:
    """Two policies (Hugging Face folders) on the same ``limit`` contexts of ``store``: each one's repeat rate of
    the rejected answer, and the change (after - before) with its 95% interval, paired by context. None when the
    store holds no wrong parseable first answer."""
    contexts = fixed_contexts(store, limit)
    if not contexts:
        return None
    rates = [repeats_by_context(contexts, second_answers(folder, contexts, SAMPLES, max_new_tokens, seed,
                                                         answer_format), SAMPLES) for folder in (before, after)]
    change, interval = paired_ci(rates[1], rates[0])
    return {"contexts": len(contexts), "samples": SAMPLES, "before": statistics.fmean(rates[0]),
            "after": statistics.fmean(rates[1]), "change": change, "ci": interval}

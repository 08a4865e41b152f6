"""The embedded default task: three-number addition with the feedback environment, and noisy demonstrations.

Every problem ``a + b + c`` with ``a, b, c`` in [0, 9] has one answer, so the verifier is exact: 1000 distinct
prompts, enough for 128 held-out validation prompts. Validation and training prompts are disjoint problems. The reference policy is the tiny model warm-started (by verl's SFT trainer) on
*noisy* multi-turn demonstrations: a demonstrator that is right on the first turn only sometimes, answers
near-misses otherwise, often repeats a rejected answer after ``Incorrect. Please think again.``, and sometimes
forgets the ``<answer>`` tags. Such a policy has what DRIFT needs: moderate first-turn success, plausible
wrong answers, and room for the feedback loop (and for weighting) to help.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

DATA_SOURCE = "drift_tiny_add"
SYSTEM_PROMPT = "You are a careful assistant. Put your final answer in <answer></answer> tags."
FEEDBACK = "Incorrect. Please think again."
MAX_OPERAND = 9
OPERANDS = 3
MAX_SUM = OPERANDS * MAX_OPERAND
SPLIT_SEED = 7
Problem = tuple[int, ...]


def question(problem: Problem) -> str:
    return f"What is {' + '.join(map(str, problem))}?"


def operands(question_text: str) -> Problem:
    """The problem a question asks (the inverse of :func:`question`)."""
    return tuple(int(x) for x in question_text.removeprefix("What is ").rstrip("?").split(" + "))


def all_problems() -> list[Problem]:
    return list(itertools.product(range(MAX_OPERAND + 1), repeat=OPERANDS))


def split_problems(num_val: int) -> tuple[list[Problem], list[Problem]]:
    """All problems in a fixed shuffled order: the first ``num_val`` validate, the rest train (disjoint)."""
    problems = all_problems()
    random.Random(SPLIT_SEED).shuffle(problems)
    return problems[num_val:], problems[:num_val]


def task_rows(problems: list[Problem], split: str) -> list[dict]:
    """Prompts in verl's RL parquet schema (chat ``prompt``, ``reward_model.ground_truth``, ``extra_info``)."""
    return [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question(problem)}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": str(sum(problem))},
            "extra_info": {"split": split, "index": i, "prompt_id": f"{split}-{i}"},
        }
        for i, problem in enumerate(problems)
    ]


@dataclass(frozen=True)
class Demonstrator:
    """The noisy demonstrator's behaviour, per turn."""

    first_correct: float = 0.5  # P(correct) on the first turn
    retry_correct: float = 0.3  # P(correct) after feedback
    repeat: float = 0.4  # P(repeat the rejected answer) after feedback, when not correct
    untagged: float = 0.05  # P(no <answer> tags) on any turn
    max_turns: int = 4

    def wrong(self, rng: random.Random, answer: int, avoid: set[int]) -> int:
        options = [answer + d for d in (-3, -2, -1, 1, 2, 3) if answer + d >= 0 and answer + d not in avoid]
        return rng.choice(options or [answer + 4 + len(avoid)])

    def conversation(self, rng: random.Random, problem: Problem) -> list[dict]:
        answer, given = sum(problem), []
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question(problem)}]
        for turn in range(self.max_turns):
            if rng.random() < (self.first_correct if turn == 0 else self.retry_correct):
                value = answer
            elif given and rng.random() < self.repeat:
                value = given[-1]
            else:
                value = self.wrong(rng, answer, set(given))
            tagged = rng.random() >= self.untagged
            messages.append({"role": "assistant", "content": f"<answer>{value}</answer>" if tagged else str(value)})
            if value == answer and tagged:
                break
            given.append(value)
            messages.append({"role": "user", "content": FEEDBACK})
        if messages[-1]["role"] == "user":
            messages.pop()
        return messages


def demonstration_rows(num: int, seed: int, demonstrator: Demonstrator = Demonstrator()) -> list[dict]:
    """Multi-turn SFT rows (verl's ``messages`` format) over all problems, validation problems included: the
    reference policy has seen sums of every kind, noisily, as a pretrained model would have."""
    rng = random.Random(seed)
    rows = []
    for i in range(num):
        problem = tuple(rng.randint(0, MAX_OPERAND) for _ in range(OPERANDS))
        rows.append({"messages": demonstrator.conversation(rng, problem), "extra_info": {"index": i}})
    return rows


def tokenizer_corpus() -> list[str]:
    texts = [f"{question(problem)} <answer>{sum(problem)}</answer>" for problem in all_problems()]
    return texts + [SYSTEM_PROMPT, FEEDBACK, "user assistant system Turn State Reward"]

"""The embedded default task: three-number addition with the feedback environment, and noisy demonstrations.

Every problem ``a + b + c`` with ``a, b, c`` in [0, 11] has one answer, so the verifier is exact: 1728 distinct
prompts, split into training, dev and test problems (:func:`splits`). Dev and test are disjoint from training,
from each other and from the 128 validation problems of the earlier task (0..9 operands), on which settings were
tuned before; the reference's demonstrations draw from training problems only, so dev and test are problems no
part of the pipeline has seen. The reference policy is the tiny model warm-started (by verl's SFT trainer) on
*noisy* multi-turn demonstrations: a demonstrator that is right on the first turn only sometimes, answers
near-misses otherwise, often repeats a rejected answer after ``Incorrect. Please think again.``, and sometimes
forgets the ``<answer>`` tags. Such a policy has what DRIFT needs: moderate first-turn success, plausible
wrong answers, and room for the feedback loop (and for weighting) to help.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from drift_verl.core.environment import HigherLower

DATA_SOURCE = "drift_tiny_add"
SYSTEM_PROMPT = "You are a careful assistant. Put your final answer in <answer></answer> tags."
FEEDBACK = "Incorrect. Please think again."
MAX_OPERAND = 11
OPERANDS = 3
MAX_SUM = OPERANDS * MAX_OPERAND
SPLIT_SEED = 7
NUM_DEV = 256  # settings are chosen here (the main job, tests, the comparison's grid)
NUM_TEST = 256  # only the comparison's final runs touch these
Problem = tuple[int, ...]


def question(problem: Problem) -> str:
    return f"What is {' + '.join(map(str, problem))}?"


def operands(question_text: str) -> Problem:
    """The problem a question asks (the inverse of :func:`question`)."""
    return tuple(int(x) for x in question_text.removeprefix("What is ").rstrip("?").split(" + "))


def all_problems(max_operand: int = MAX_OPERAND) -> list[Problem]:
    return list(itertools.product(range(max_operand + 1), repeat=OPERANDS))


def earlier_validation_problems() -> list[Problem]:
    """The 128 validation problems of the earlier task (operands 0..9), which settings were tuned on: kept out of
    dev and test (they may train)."""
    problems = all_problems(9)
    random.Random(SPLIT_SEED).shuffle(problems)
    return problems[:128]


def splits() -> dict[str, list[Problem]]:
    """Disjoint ``train``, ``dev`` and ``test`` problems in a fixed order (the same on every machine)."""
    earlier = set(earlier_validation_problems())
    held_out = [p for p in all_problems() if p not in earlier]
    random.Random(SPLIT_SEED).shuffle(held_out)
    dev, test = held_out[:NUM_DEV], held_out[NUM_DEV:NUM_DEV + NUM_TEST]
    taken = set(dev) | set(test)
    return {"train": [p for p in all_problems() if p not in taken], "dev": dev, "test": test}


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

    def wrong(self, rng: random.Random, answer: int, given: list[int], heard: list[str]) -> int:
        """A wrong answer near the sum, not one given before (``heard[i]``: the feedback on ``given[i]``, unused
        here)."""
        options = [answer + d for d in (-3, -2, -1, 1, 2, 3) if answer + d >= 0 and answer + d not in given]
        return rng.choice(options or [answer + 4 + len(set(given))])

    def feedback(self, value: int, answer: int, tagged: bool) -> str:
        """What the environment says after a wrong answer: the paper's unary message (``try_again``)."""
        return FEEDBACK

    def say(self, problem: Problem, value: int, tagged: bool) -> str:
        """The assistant message that gives ``value``: the tagged number alone."""
        return f"<answer>{value}</answer>" if tagged else str(value)

    def conversation(self, rng: random.Random, problem: Problem) -> list[dict]:
        answer, given, heard = sum(problem), [], []
        messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question(problem)}]
        for turn in range(self.max_turns):
            if rng.random() < (self.first_correct if turn == 0 else self.retry_correct):
                value = answer
            elif given and rng.random() < self.repeat:
                value = given[-1]
            else:
                value = self.wrong(rng, answer, given, heard)
            tagged = rng.random() >= self.untagged
            messages.append({"role": "assistant", "content": self.say(problem, value, tagged)})
            if value == answer and tagged:
                break
            given.append(value)
            heard.append(self.feedback(value, answer, tagged))
            messages.append({"role": "user", "content": heard[-1]})
        if messages[-1]["role"] == "user":
            messages.pop()
        return messages


@dataclass(frozen=True)
class InformedDemonstrator(Demonstrator):
    """A demonstrator that hears ``higher_lower``'s feedback and uses it: its next wrong answer lies below every
    answer it heard was too high and above every one too low (the sum itself when no such near-miss is left), and
    it seldom repeats. The first turn is the noisy demonstrator's, so a reference fine-tuned on these conversations
    (``tiny_reference_informative``) keeps its first-turn skill and gains only the use of the feedback."""

    retry_correct: float = 0.4
    repeat: float = 0.1
    env: str = "higher_lower"  # the environment it reacts to (recorded in the reference's drift_reference.json)

    def wrong(self, rng: random.Random, answer: int, given: list[int], heard: list[str]) -> int:
        high = [v for v, h in zip(given, heard) if h == HigherLower.DEFAULTS["high"]]
        low = [v for v, h in zip(given, heard) if h == HigherLower.DEFAULTS["low"]]
        if not high and not low:  # first turn, or only "no answer found": no direction to follow
            return super().wrong(rng, answer, given, heard)
        options = [answer + d for d in (-3, -2, -1, 1, 2, 3) if answer + d >= 0 and answer + d not in given
                   and answer + d < min(high, default=answer + 4) and answer + d > max(low, default=-1)]
        return rng.choice(options) if options else answer

    def feedback(self, value: int, answer: int, tagged: bool) -> str:
        if not tagged:
            return HigherLower.DEFAULTS["unparsed"]
        return HigherLower.DEFAULTS["high" if value > answer else "low"]


@dataclass(frozen=True)
class WorkedDemonstrator(Demonstrator):
    """The noisy demonstrator, showing its working: the partial sums, then (``passes=2``) the same sum checked in
    reverse order, then the tagged sum (``3 + 5 = 8, 8 + 4 = 12; 4 + 5 = 9, 9 + 3 = 12. <answer>12</answer>``,
    about 43 tokens where the answer alone is 3). A wrong answer is a slip in each pass's first partial sum, carried
    through (:meth:`working`): every pass ends at the answer given. Its reference (``tiny_reference_worked``,
    ``task=tiny_long``) spends most of a trajectory's tokens generating, as reasoning models do: the rollout-heavy
    regime."""

    passes: int = 2  # 1: the partial sums only; 2: and the check in reverse order (recorded with the reference)

    def say(self, problem: Problem, value: int, tagged: bool) -> str:
        working = "; ".join(self.working(order, value) for order in (problem, problem[::-1])[:self.passes]) + "."
        return f"{working} <answer>{value}</answer>" if tagged else working

    @staticmethod
    def working(problem: Problem, value: int) -> str:
        """``problem``'s partial sums ending at ``value``: a wrong ``value`` is a slip in the first partial sum,
        carried through (in the last one when the first would go below 0)."""
        slip = value - sum(problem)
        first_slip = slip if problem[0] + problem[1] + slip >= 0 else 0
        partial, steps = problem[0], []
        for i, operand in enumerate(problem[1:]):
            result = partial + operand + (first_slip if i == 0 else 0)
            if i == len(problem) - 2:
                result = value  # the working ends at the answer given
            steps.append(f"{partial} + {operand} = {result}")
            partial = result
        return ", ".join(steps)


def demonstration_rows(num: int, seed: int, demonstrator: Demonstrator = Demonstrator()) -> list[dict]:
    """Multi-turn SFT rows (verl's ``messages`` format) over the training problems only: dev and test problems
    stay unseen, so their scores measure what the policy learned about addition, not what it memorised."""
    rng = random.Random(seed)
    problems = splits()["train"]
    rows = []
    for i in range(num):
        problem = rng.choice(problems)
        rows.append({"messages": demonstrator.conversation(rng, problem), "extra_info": {"index": i}})
    return rows


def tokenizer_corpus() -> list[str]:
    texts = [f"{question(problem)} <answer>{sum(problem)}</answer>" for problem in all_problems()]
    return texts + [SYSTEM_PROMPT, FEEDBACK, "user assistant system Turn State Reward"]

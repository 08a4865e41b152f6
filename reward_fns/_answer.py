"""The answer span the reward functions grade, found with :mod:`drift_verl.core.answers`' parsers.

``answer_format`` (from ``reward_kwargs``) names one parser, so the reward agrees with the feedback loop's
``drift.env.answer_format`` on what "no parseable answer" means; ``None`` accepts any of the formats.
A ``\\boxed{}`` inside the span is unwrapped (``<answer>\\boxed{5}</answer>`` grades ``5``).
"""

from __future__ import annotations

from drift_verl.core.answers import extract_answer_tag, extract_boxed, extract_gsm8k, get_parser

ANY_FORMAT = (extract_answer_tag, extract_boxed, extract_gsm8k)  # tried in this order when no format is named


def extract(solution_str: str, answer_format: str | None = None) -> str | None:
    if answer_format is None:
        answer = next((a for a in (parse(solution_str) for parse in ANY_FORMAT) if a is not None), None)
    else:
        answer = get_parser(answer_format)(solution_str)
    if answer is not None and "\\boxed{" in answer:
        answer = extract_boxed(answer)
    return answer

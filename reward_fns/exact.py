"""Exact-match verifier, the paper reference code's normalisation: strip whitespace, lower-case, compare.

The answer is the last ``<answer>...</answer>`` in the response (the paper's format).
"""

from __future__ import annotations

import re

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def extract_answer(text: str) -> str | None:
    """The last ``<answer>`` block's content, or None when the response has no parseable answer."""
    found = _ANSWER.findall(text or "")
    return found[-1] if found else None


def normalize(answer: str) -> str:
    return answer.strip().lower()


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs) -> float:
    answer = extract_answer(solution_str)
    if answer is None:
        return 0.0
    return 1.0 if normalize(answer) == normalize(str(ground_truth)) else 0.0

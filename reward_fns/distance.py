"""A graded verifier for numeric answers: 1 for the exact answer, partial credit for a near one.

``score = max(0, 1 - |answer - truth| / max(|truth|, 1))``: a wrong answer scores strictly less than 1, so
"solved" (a turn scored 1, which ends the conversation and is what rejection SFT keeps) still means exact. How the
partial credit enters DRIFT's return: ``drift.partial_credit`` (counted once per unsolved trajectory, never
summed over turns; README "Your own environment"). An unparseable or non-numeric answer scores 0.
"""

from __future__ import annotations

import math

from reward_fns._answer import extract


def _number(text: str) -> float | None:
    try:
        value = float(text.strip().replace(",", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, answer_format="answer", **kwargs):
    answer = extract(solution_str, answer_format)
    truth = _number(str(ground_truth))
    value = None if answer is None else _number(answer)
    if value is None or truth is None:
        return 0.0
    if value == truth:
        return 1.0
    return max(0.0, 1.0 - abs(value - truth) / max(abs(truth), 1.0))

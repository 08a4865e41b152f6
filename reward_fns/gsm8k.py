"""GSM8K verifier: numeric match of the model's answer against the ``#### n`` gold.

The gold may be the raw GSM8K solution (``... #### 1,234``) or just the number. The model's answer span
(``answer_format`` in ``reward_kwargs``; default: ``<answer>``, ``\\boxed{}`` or ``#### n``) is graded by its
last number, so currency signs, thousands commas and units do not matter (``$1,234.00 per week`` = ``1234``).
"""

from __future__ import annotations

import re
from decimal import Decimal

from drift_verl.core.answers import extract_gsm8k
from reward_fns._answer import extract

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")


def last_number(text: str) -> Decimal | None:
    """The last number written in ``text`` (``-1,234.5``, ``.5``), commas dropped; None if there is none."""
    found = [m for m in _NUMBER.findall(text.replace("\u2212", "-")) if any(c.isdigit() for c in m)]
    return Decimal(found[-1].replace(",", "")) if found else None


def gold_number(ground_truth) -> Decimal:
    text = str(ground_truth)
    value = last_number(extract_gsm8k(text) or text)
    if value is None:
        raise ValueError(f"gsm8k reward: ground truth {text!r} holds no number")
    return value


def compute_score(data_source, solution_str, ground_truth, extra_info=None, answer_format=None, **kwargs) -> float:
    answer = extract(solution_str, answer_format)
    value = last_number(answer) if answer is not None else None
    return 1.0 if value is not None and value == gold_number(ground_truth) else 0.0

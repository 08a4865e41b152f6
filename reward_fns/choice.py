"""Multiple-choice verifier: the chosen option letter must match the gold letter.

The answer span (``answer_format`` in ``reward_kwargs``; default: ``<answer>``, ``\\boxed{}`` or ``#### n``) may
be the bare letter (``B``, ``(b)``, ``B.``), the letter with its option text (``(B) 42``, ``B) 42``) or a phrase
(``the answer is B``, ``Option (B)``). A lone capital followed by text (``A dog``) is not read as a choice.
The gold is read the same way, so ``B`` and ``(B)`` both work as ``ground_truth``.
"""

from __future__ import annotations

import re

from reward_fns._answer import extract

_ALONE = re.compile(r"\(?([A-Za-z])\)?[.:]?")
_LEADING = re.compile(r"(?:\(([A-Z])\)|([A-Z])[.:)])(?:\s|$)")
_PHRASE = re.compile(r"\b(?:answer|option|choice)\s*(?:is)?\s*:?\s*\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE)
_TEXT = re.compile(r"\\text\{([^{}]*)\}")


def choice_letter(text: str) -> str | None:
    """The option letter ``text`` names, upper-cased; None when it names none."""
    text = _TEXT.sub(r"\1", text).strip().strip("$").strip()
    for match in (_ALONE.fullmatch, _LEADING.match, _PHRASE.search):
        found = match(text)
        if found:
            return next(group for group in found.groups() if group).upper()
    return None


def compute_score(data_source, solution_str, ground_truth, extra_info=None, answer_format=None, **kwargs) -> float:
    gold = choice_letter(str(ground_truth))
    if gold is None:
        raise ValueError(f"choice reward: ground truth {ground_truth!r} is not an option letter")
    answer = extract(solution_str, answer_format)
    return 1.0 if answer is not None and choice_letter(answer) == gold else 0.0

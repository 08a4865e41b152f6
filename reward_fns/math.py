"""Math verifier: the answer is correct when math-verify finds it equivalent to the gold answer.

Accepts the paper's ``<answer>...</answer>`` and ``\\boxed{}`` (``answer_format`` in ``reward_kwargs`` picks
one; default: either) and equivalent forms (``\\frac{1}{2}`` = ``0.5`` = ``1/2``, ``\\dfrac``, ``\\left(``, sets
in any order), ignoring ``$...$`` / ``\\(...\\)`` / ``\\[...\\]`` delimiters, percent signs, thousands commas and a
plain-text unit after a number. Each call is bounded by ``timeout_s`` seconds and a memory cap in a verifier
worker process (:mod:`drift_verl.integration.verifier`; math-verify's own signal-based timeout only works in the main
thread, and a huge literal or power tower holds the GIL in C code): such an answer scores 0.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from drift_verl.integration.verifier import VerifierFailed, isolated
from reward_fns._answer import extract

logger = logging.getLogger(__name__)

EXTRACTION = (LatexExtractionConfig(), ExprExtractionConfig())
_DELIMITED = re.compile(r"^\s*(?:\$\$(.*)\$\$|\$(.*)\$|\\\((.*)\\\)|\\\[(.*)\\\])\s*$", re.DOTALL)
_PERCENT = re.compile(r"\\?%")
_NUMBER_WITH_UNIT = re.compile(r"^(\\?\$?\s*[-+]?[\d,]*\.?\d+)\s+[A-Za-z][A-Za-z .]*$")  # "18 dollars" -> 18


def _bare(expression: str) -> str:
    """The expression without math delimiters, percent signs (as MATH grading drops them) or a plain-text unit."""
    match = _DELIMITED.match(expression)
    body = next(group for group in match.groups() if group is not None) if match else expression
    body = _PERCENT.sub("", body).strip()
    unit = _NUMBER_WITH_UNIT.match(body)
    return unit.group(1) if unit else body


def _parse(expression: str) -> list:
    """math-verify's parse of one bare expression (boxed, so any LaTeX inside is taken whole)."""
    # timeouts off: signals do not work outside the main thread; drift_verl.integration.verifier bounds the whole call
    return parse(f"\\boxed{{{_bare(expression)}}}", EXTRACTION, parsing_timeout=None)


@lru_cache(maxsize=4096)
def _parse_gold(ground_truth: str) -> tuple:
    """Gold answers repeat for every trajectory and turn of a prompt: parse each once."""
    return tuple(_parse(ground_truth))


def equivalent(answer: str, ground_truth: str) -> bool:
    gold, predicted = list(_parse_gold(ground_truth)), _parse(answer)
    return bool(gold and predicted and verify(gold, predicted, timeout_seconds=None))


def compute_score(
    data_source, solution_str, ground_truth, extra_info=None, answer_format=None, timeout_s=5.0, **kwargs
) -> float:
    answer = extract(solution_str, answer_format)
    if answer is None:
        return 0.0
    try:
        return 1.0 if isolated(equivalent, timeout_s, answer, str(ground_truth)) else 0.0
    except VerifierFailed as error:
        logger.warning("math verifier failed on answer %.200r (%s); scoring 0", answer, error)
        return 0.0

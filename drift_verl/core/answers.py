"""Answer extraction: the paper's ``<answer>`` tag, LaTeX ``\\boxed{}``, and GSM8K's ``#### n``.

The agent loop records each turn's parsed answer (for the repetition penalty and the format penalty); the
reward functions in ``reward_fns/`` use the same parsers so both agree on what "no parseable answer" means.
"""

from __future__ import annotations

import re

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_GSM8K = re.compile(r"####\s*([-+]?[\d,]*\.?\d+)")


def extract_answer_tag(text: str) -> str | None:
    found = _ANSWER_TAG.findall(text or "")
    return found[-1].strip() if found else None


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``, with nested braces."""
    text = text or ""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for index in range(begin, len(text)):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return text[begin:index].strip()
            depth -= 1
    return None


def extract_gsm8k(text: str) -> str | None:
    found = _GSM8K.findall(text or "")
    return found[-1].replace(",", "") if found else None


PARSERS = {"answer": extract_answer_tag, "boxed": extract_boxed, "gsm8k": extract_gsm8k}


def get_parser(name: str):
    if name not in PARSERS:
        raise ValueError(f"unknown answer format {name!r}; choose one of {sorted(PARSERS)}")
    return PARSERS[name]


def normalize(answer: str) -> str:
    """The reference implementation's normalisation: strip whitespace, lower-case."""
    return answer.strip().lower()

"""The multi-turn environment: what the user says after each answer of the policy, selected by ``drift.env.name``.

The feedback agent loop (``drift_feedback``, both recipes) runs the conversation: it generates an answer, has the
verifier score it, stops at the first correct one (reward >= 1) or after ``drift.env.max_turns``, and otherwise
asks the environment what to say next. An environment is a class with this contract (pure Python; one instance per
trajectory, so it may keep state across the conversation):

``Env(config)``
    ``config`` is the typed ``drift.env`` section (:class:`drift_verl.core.config.EnvConfig`); the environment's
    own settings are ``config.options`` (a mapping from ``drift.env.options``).
``reset(row) -> str | None``
    Before the first answer. ``row`` holds the training row's ``ground_truth``, ``data_source`` and
    ``extra_info``. A string is appended to the prompt as a user message; None appends nothing.
``step(text, answer, reward, turn) -> str | None``
    After each wrong answer that is not the last turn: ``text`` is the answer as generated, ``answer`` its parsed
    and normalised form (None: unparseable), ``reward`` the verifier's score, ``turn`` 1-based. A string is the
    next user message; None ends the conversation. Rewards are the verifier's alone: "solved" (reward >= 1) and the
    return mean the same whatever the environment says.

Model output is untrusted and so is a user's environment: the loop bounds every call
(``drift.env.env_timeout_s``) and checks what comes back; a call that raises, runs too long or returns anything else
ends that trajectory (counted, never the job).

Built-in environments: ``try_again`` (the paper's: one unary message after every wrong answer, ``drift.env.feedback``;
``prompt_mode=full`` adds a state block) and ``higher_lower`` (informative: whether a numeric answer is too high or too
low). Any other class is named ``pkg://module:Class`` or ``module:Class``.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Protocol

from drift_verl.core.errors import ClearError


class EnvError(ClearError, ValueError):
    """An environment that cannot be loaded or broke its contract; the message names it and what it did."""


class Environment(Protocol):
    def reset(self, row: dict) -> str | None: ...

    def step(self, text: str, answer: str | None, reward: float, turn: int) -> str | None: ...


class TryAgain:
    """The paper's environment: the same message after every wrong answer (``drift.env.feedback``); with
    ``drift.env.prompt_mode=full`` a state block before it (turn, the rejected answer, reward, turns left)."""

    def __init__(self, config):
        self.message, self.mode, self.max_turns = config.feedback, config.prompt_mode, config.max_turns

    def reset(self, row: dict) -> str | None:
        return None

    def step(self, text: str, answer: str | None, reward: float, turn: int) -> str | None:
        if self.mode == "simple":
            return self.message
        state = "no parseable answer" if answer is None else f"answer {answer!r} is incorrect"
        return (f"Turn {turn} / {self.max_turns}\nState: {state}\nReward: 0\nActions left: {self.max_turns - turn}\n"
                f"{self.message}")


class HigherLower:
    """Informative feedback for numeric answers: whether the answer is too high or too low (options ``high``,
    ``low``, ``unparsed``: the three messages)."""

    DEFAULTS = {"high": "Incorrect: too high. Please think again.", "low": "Incorrect: too low. Please think again.",
                "unparsed": "No answer found. Please think again."}

    def __init__(self, config):
        unknown = sorted(set(config.options) - set(self.DEFAULTS))
        if unknown:
            raise EnvError(f"drift.env.options: unknown key {unknown[0]!r} for higher_lower; it takes "
                                    f"{', '.join(self.DEFAULTS)}")
        self.messages = {**self.DEFAULTS, **config.options}
        self.truth: float | None = None

    def reset(self, row: dict) -> str | None:
        self.truth = _number(row.get("ground_truth"))
        return None

    def step(self, text: str, answer: str | None, reward: float, turn: int) -> str | None:
        value = _number(answer)
        if value is None or self.truth is None:
            return self.messages["unparsed"]
        return self.messages["high" if value > self.truth else "low"]


def _number(text) -> float | None:
    try:
        value = float(str(text).replace(",", ""))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


BUILT_IN = {"try_again": TryAgain, "higher_lower": HigherLower}


def environment_class(name: str) -> type:
    """The class ``drift.env.name`` names: a built-in name, ``pkg://module:Class`` or ``module:Class``."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    module, _, attribute = name.removeprefix("pkg://").partition(":")
    if not module or not attribute:
        raise EnvError(f"drift.env.name={name!r}: expected one of {sorted(BUILT_IN)} or "
                                "pkg://module:Class")
    try:
        cls = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise EnvError(f"drift.env.name={name!r}: cannot load it ({type(error).__name__}: {error})") from None
    if not all(callable(getattr(cls, method, None)) for method in ("reset", "step")):
        raise EnvError(f"drift.env.name={name!r}: {cls!r} has no reset(row) and step(text, answer, reward, "
                                "turn) methods")
    return cls


def checked_message(value: Any) -> str | None:
    """What ``reset`` or ``step`` returned, if it keeps the contract (a string or None); else :class:`EnvError`
    saying what came back."""
    if value is None or isinstance(value, str):
        return value
    raise EnvError(f"returned {_shown(value)}, not a string or None")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

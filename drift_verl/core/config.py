"""The ``drift:`` config section as typed dataclasses: the one place each default is written and each range checked.

Everything that needs a DRIFT setting reads it from here, so a default cannot drift apart between copies:

- the Hydra recipes: ``recipes/__init__.py`` registers :func:`defaults` as the node ``recipe/common.yaml`` puts
  under ``drift:``, so the YAML files hold only what differs from these defaults;
- the driver, the trainer and the feedback agent loop: :meth:`DriftConfig.from_section`, once in each process;
- the two CLIs (``python -m drift_verl.weights``, ``python -m drift_verl.store inspect``): one argument helper,
  :func:`drift_verl.weights.add_weight_arguments`, with :class:`WeightConfig`'s defaults;
- the verifier pool: :class:`EnvConfig`'s defaults.

Values are checked, never converted (a YAML ``10`` stays an int): the store's fingerprint hashes ``drift.env`` as
given, so typing the section did not change the identity of any store made before.
Pure Python, no verl import: ``core``'s weight pass takes :class:`WeightConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from drift_verl.core.answers import PARSERS
from drift_verl.core.errors import ClearError

WEIGHTINGS = ("drift", "uniform", "rejection")
NORMALIZATIONS = ("group", "store")  # one normaliser per prompt group, or one over the whole store
NORMALIZATION_ALIASES = {"batch": "store"}  # the old name of ``store`` (it never meant one optimizer step's batch)
LOSS_NORMALIZATIONS = ("mean", "weight_sum")  # see drift_verl.core.weights.step_weights
TRAIN_TURNS = ("last", "all")
CONSOLE_MODES = ("auto", "quiet", "full")
PHASES = ("rollouts", "weights", "update")
PHASE_CHOICES = (list(PHASES), ["rollouts"], ["weights", "update"])


class ConfigError(ClearError, ValueError):
    """A bad ``drift.*`` value or combination; the message names the key (``key``: the key under ``drift.``)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def _check(ok: bool, key: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"drift.{key}={value!r}: expected {expected}", key)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value, least: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def normalization_name(value: str) -> str:
    """``value`` with its alias resolved (``batch`` -> ``store``); unknown names are returned as they are."""
    return NORMALIZATION_ALIASES.get(value, value) if isinstance(value, str) else value


@dataclasses.dataclass(frozen=True)
class WeightConfig:
    """What phase 2 turns a store into weights with: ``drift.gamma``, ``beta``, ``repetition_coef``,
    ``normalization``, ``weight_cap`` and ``weighting`` (the CLIs' ``--gamma`` ... ``--cap``). Its defaults are
    :class:`DriftConfig`'s, and its checks the only ones these values get."""

    gamma: float = 0.9  # return: sum_t gamma^(t-1) r_t + format penalty - repetition penalty
    beta: float = 0.1  # temperature of the weights w = exp(R/beta) / group mean
    repetition_coef: float = 0.5  # lambda in lambda * (1 - distinct answers / answers)
    normalization: str = "group"  # group (paper: mean 1 per prompt) | store (mean 1 over the store; alias batch)
    cap: float | None = None  # clip weights at this value (after normalisation; not renormalised); drift.weight_cap
    # kappa: an unsolved trajectory's best near-miss (a graded verifier's 0 < r < 1) adds kappa * r to its return,
    # once (core/weights.py::turn_shares); < 1 so that a first-turn success beats any run of near-misses
    partial_credit: float = 0.0
    weighting: str = "drift"  # drift: exp(R/beta); the paper's baselines: uniform (offline SFT), rejection (successes)

    def __post_init__(self):
        _check(_number(self.gamma) and 0 < self.gamma <= 1, "gamma", "a number in (0, 1]", self.gamma)
        _check(_number(self.beta) and math.isfinite(self.beta) and self.beta > 0, "beta", "a number > 0", self.beta)
        _check(_number(self.repetition_coef) and self.repetition_coef >= 0, "repetition_coef", "a number >= 0",
               self.repetition_coef)
        _check(normalization_name(self.normalization) in NORMALIZATIONS, "normalization",
               "group or store (alias: batch)", self.normalization)
        object.__setattr__(self, "normalization", normalization_name(self.normalization))
        _check(self.cap is None or (_number(self.cap) and self.cap > 0), "weight_cap", "null or a number > 0", self.cap)
        _check(self.weighting in WEIGHTINGS, "weighting", "drift, uniform or rejection", self.weighting)
        _check(_number(self.partial_credit) and 0 <= self.partial_credit < 1, "partial_credit", "a number in [0, 1)",
               self.partial_credit)


@dataclasses.dataclass
class EnvConfig:
    """``drift.env``: the multi-turn feedback environment (agent loop ``drift_feedback``; the environment's contract:
    :mod:`drift_verl.core.environment`)."""

    max_turns: int = 5  # T
    # what is said after a wrong answer: a built-in environment (try_again, higher_lower) or pkg://module:Class
    name: str = "try_again"
    options: dict = dataclasses.field(default_factory=dict)  # the environment's own settings
    env_timeout_s: float = 10  # one call into the environment; a call past it (or failing) ends that trajectory
    feedback: str = "Incorrect. Please think again."  # try_again's message
    prompt_mode: str = "simple"  # try_again: simple | full (Turn k / State / Reward / actions left block)
    answer_format: str = "answer"  # answer (<answer>..</answer>) | boxed | gsm8k (#### n)
    turn_max_tokens: int | None = None  # per-turn generation cap; None: what is left of data.max_response_length
    # a call running longer is killed and scores 0. Written 10, not 10.0: the store fingerprint hashes the value as
    # given (tests/integration/test_store_identity.py pins it)
    verifier_timeout_s: float = 10
    verifier_memory_mb: int = 2048  # address-space cap of each verifier worker process (a call past it scores 0)
    verifier_workers: int = 2  # verifier worker processes per agent-loop worker

    def __post_init__(self):
        _check(_count(self.max_turns), "env.max_turns", "an integer >= 1", self.max_turns)
        _check(isinstance(self.name, str) and bool(self.name), "env.name",
               "try_again, higher_lower or pkg://module:Class", self.name)
        _check(isinstance(self.options, dict), "env.options", "a mapping", self.options)
        _check(_number(self.env_timeout_s) and self.env_timeout_s > 0, "env.env_timeout_s", "seconds > 0",
               self.env_timeout_s)
        _check(self.prompt_mode in ("simple", "full"), "env.prompt_mode", "simple or full", self.prompt_mode)
        _check(self.answer_format in PARSERS, "env.answer_format", f"one of {sorted(PARSERS)}", self.answer_format)
        _check(self.turn_max_tokens is None or _count(self.turn_max_tokens), "env.turn_max_tokens",
               "null or an integer >= 1", self.turn_max_tokens)
        _check(_number(self.verifier_timeout_s) and self.verifier_timeout_s > 0, "env.verifier_timeout_s",
               "seconds > 0", self.verifier_timeout_s)
        _check(_count(self.verifier_memory_mb, 64), "env.verifier_memory_mb", "an integer >= 64 (MB)",
               self.verifier_memory_mb)
        _check(_count(self.verifier_workers), "env.verifier_workers", "an integer >= 1", self.verifier_workers)


@dataclasses.dataclass
class HealthConfig:
    """``drift.health``: how long each kind of wait may take before the job is ended (drift_verl.integration.job.health)."""

    poll_s: float = 2.0  # how often the driver checks Ray's actors and each vLLM server's /health
    startup_timeout_s: float = 120.0  # a placement group still pending: Ray lacks the resources asked for
    engine_unresponsive_s: float = 120.0  # a vLLM server that answers no health check this long is wedged
    weight_sync_timeout_s: float = 900.0  # one push of the actor's weights into the rollout servers
    rollout_stall_timeout_s: float = 1800.0  # no rollout finished (training or validation) for this long
    grace_s: float = 30.0  # after the interrupt: exit the process if verl's shutdown did not end it

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"drift.health.{field.name} must be a number of seconds > 0, got {value!r}",
                                  f"health.{field.name}")
            setattr(self, field.name, float(value))


@dataclasses.dataclass
class DriftConfig:
    """``drift:``. Both recipes read ``env``, ``gamma``, ``repetition_coef`` and ``health``; the rest is DRIFT's.
    The weight settings' defaults are :class:`WeightConfig`'s, which also checks them (:meth:`weight_config`)."""

    recipe: str = "drift"  # set by recipe=...; recipe/common.yaml leaves it ??? so a recipe that did not apply fails
    gamma: float = WeightConfig.gamma
    repetition_coef: float = WeightConfig.repetition_coef
    beta: float = WeightConfig.beta
    normalization: str = WeightConfig.normalization
    loss_normalization: str = "mean"  # per optimizer step: mean (sum w*L / B) | weight_sum (sum w*L / sum w)
    weight_cap: float | None = WeightConfig.cap
    partial_credit: float = WeightConfig.partial_credit
    weighting: str = WeightConfig.weighting
    train_turns: str = "last"  # last (reference code: earlier turns are context) | all assistant turns
    epochs: int = 1  # weighted-SFT passes over the trajectory store per round
    rounds: int = 1  # >1: iterative DRIFT, the updated policy becomes the next round's reference
    max_prompts: int | None = None  # use only the first K training prompts (None: all)
    prompts_per_shard: int = 16  # rollout shard size (a killed run resumes at the first missing shard)
    shards_in_flight: int = 2  # shards generated at once: the next keeps the servers busy while one finishes
    # weighted SFT shuffles whole prompt groups within windows of this many shards (memory: one or two windows of
    # shards held); changing it refuses old checkpoints
    shuffle_window: int = 64
    store_dir: str = "drift_store"  # stores live in <store_dir>/<fingerprint>/, reused when the config matches
    # with phases=[weights,update]: a store folder (<store_dir>/<fingerprint>) made elsewhere
    store: str | None = None
    # [rollouts]: make or complete the store and stop; [weights,update]: train from an existing store
    phases: list[str] = dataclasses.field(default_factory=lambda: list(PHASES))
    seed: int = 0  # mini-batch order
    # > 0: the end-of-run summary compares the reference and the trained policy on this many fixed turn-2 contexts
    # of the store (drift_verl/eval/non_repeat.py; transformers on the trainer's CPU: small policies only)
    non_repeat_contexts: int = 0
    console: str = "auto"  # auto | quiet | full: the console of python -m drift_verl.main (integration/job/quiet.py)
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    health: HealthConfig = dataclasses.field(default_factory=HealthConfig)

    def __post_init__(self):
        _check(self.recipe in ("drift", "grpo"), "recipe", "drift or grpo (set by recipe=...)", self.recipe)
        _check(self.console in CONSOLE_MODES, "console", "auto, quiet or full", self.console)
        self.normalization = self.weight_config().normalization  # checks the weight settings; resolves ``batch``
        _check(self.loss_normalization in LOSS_NORMALIZATIONS, "loss_normalization", "mean or weight_sum",
               self.loss_normalization)
        _check(self.train_turns in TRAIN_TURNS, "train_turns", "last or all", self.train_turns)
        for key in ("epochs", "rounds", "prompts_per_shard", "shards_in_flight", "shuffle_window"):
            _check(_count(getattr(self, key)), key, "an integer >= 1", getattr(self, key))
        _check(_count(self.non_repeat_contexts, 0), "non_repeat_contexts", "an integer >= 0",
               self.non_repeat_contexts)
        _check(self.max_prompts is None or _count(self.max_prompts), "max_prompts", "null or an integer >= 1",
               self.max_prompts)
        self.phases = list(self.phases)
        _check(self.phases in PHASE_CHOICES, "phases", " or ".join(f"[{','.join(p)}]" for p in PHASE_CHOICES),
               self.phases)
        _check(self.store is None or "rollouts" not in self.phases, "store",
               "null unless drift.phases=[weights,update] (a store to train from is not rolled out)", self.store)
        _check(self.rounds == 1 or self.phases == list(PHASES), "rounds",
               "1 with drift.phases other than all three (each round rolls out from the last one's policy)",
               self.rounds)

    @property
    def rolls_out(self) -> bool:
        return "rollouts" in self.phases

    @property
    def trains(self) -> bool:
        return "update" in self.phases

    def weight_config(self) -> WeightConfig:
        return WeightConfig(gamma=self.gamma, beta=self.beta, repetition_coef=self.repetition_coef,
                            normalization=self.normalization, cap=self.weight_cap, weighting=self.weighting,
                            partial_credit=self.partial_credit)

    @classmethod
    def from_section(cls, section: Any) -> DriftConfig:
        """From the composed config's ``drift`` node (resolved) or a plain mapping."""
        from omegaconf import DictConfig, OmegaConf

        if isinstance(section, DictConfig):
            section = OmegaConf.to_container(section, resolve=True)
        return _build(cls, section, "")


def _build(cls, section, prefix: str):
    """``cls(**section)`` with nested dataclasses; unknown keys are an error naming them."""
    values = dict(section or {})
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown key drift.{prefix}{unknown[0]}{more}; "
                          f"drift.{prefix}* keys are: {', '.join(sorted(fields))}", f"{prefix}{unknown[0]}")
    for name, value in values.items():
        nested = fields[name].default_factory
        if nested is not dataclasses.MISSING and dataclasses.is_dataclass(nested):
            values[name] = _build(nested, value, f"{prefix}{name}.")
    return cls(**values)


def defaults() -> dict:
    """The ``drift:`` section with every default, as plain values: the node the Hydra recipes start from."""
    return dataclasses.asdict(DriftConfig())

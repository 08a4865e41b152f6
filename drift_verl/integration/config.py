"""The ``drift:`` config section as typed dataclasses, validated once, in the driver, before Ray starts.

:func:`DriftConfig.from_section` checks every value and rejects unknown keys (a typo in a YAML config would
otherwise be silently ignored); :func:`check_job` adds the checks that need the rest of the config or a file:
enough prompts for one mini-batch, a per-turn token cap that fits the response budget, a verifier that imports.
The trainer and the feedback loop read the same dataclasses, so no value is cast in two places.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from drift_verl.core.answers import PARSERS
from drift_verl.core.errors import ClearError
from drift_verl.core.weights import LOSS_NORMALIZATIONS, NORMALIZATIONS, WeightConfig, normalization_name
from drift_verl.integration.health import HealthConfig


class ConfigError(ClearError, ValueError):
    """A bad ``drift.*`` value or combination; the message names the key."""


def _check(ok: bool, key: str, expected: str, value) -> None:
    if not ok:
        raise ConfigError(f"drift.{key}={value!r}: expected {expected}")


def _build(cls, section, prefix: str):
    """``cls(**section)`` with nested dataclasses; unknown keys are an error naming them."""
    values = dict(section or {})
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown key drift.{prefix}{unknown[0]}{more}; "
                          f"drift.{prefix}* keys are: {', '.join(sorted(fields))}")
    for name, value in values.items():
        nested = fields[name].default_factory if fields[name].default_factory is not dataclasses.MISSING else None
        if nested is not None and dataclasses.is_dataclass(nested):
            values[name] = _build(nested, value, f"{prefix}{name}.")
    try:
        return cls(**values)
    except ValueError as error:  # HealthConfig's own checks
        raise ConfigError(str(error)) from None


@dataclasses.dataclass
class EnvConfig:
    """``drift.env``: the multi-turn feedback environment."""

    max_turns: int = 5
    feedback: str = "Incorrect. Please think again."
    prompt_mode: str = "simple"
    answer_format: str = "answer"
    turn_max_tokens: int | None = None
    verifier_timeout_s: float = 10.0
    verifier_memory_mb: int = 2048
    verifier_workers: int = 2

    def __post_init__(self):
        _check(isinstance(self.max_turns, int) and self.max_turns >= 1, "env.max_turns", "an integer >= 1",
               self.max_turns)
        _check(self.prompt_mode in ("simple", "full"), "env.prompt_mode", "simple or full", self.prompt_mode)
        _check(self.answer_format in PARSERS, "env.answer_format", f"one of {sorted(PARSERS)}", self.answer_format)
        _check(self.turn_max_tokens is None or (isinstance(self.turn_max_tokens, int) and self.turn_max_tokens >= 1),
               "env.turn_max_tokens", "null or an integer >= 1", self.turn_max_tokens)
        _check(_number(self.verifier_timeout_s) and self.verifier_timeout_s > 0, "env.verifier_timeout_s",
               "seconds > 0", self.verifier_timeout_s)
        _check(isinstance(self.verifier_memory_mb, int) and self.verifier_memory_mb >= 64, "env.verifier_memory_mb",
               "an integer >= 64 (MB)", self.verifier_memory_mb)
        _check(isinstance(self.verifier_workers, int) and self.verifier_workers >= 1, "env.verifier_workers",
               "an integer >= 1", self.verifier_workers)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


CONSOLE_MODES = ("auto", "quiet", "full")
PHASES = ("rollouts", "weights", "update")
PHASE_CHOICES = (list(PHASES), ["rollouts"], ["weights", "update"])


@dataclasses.dataclass
class DriftConfig:
    """``drift:``. Both recipes read ``env``, ``gamma``, ``repetition_coef`` and ``health``; the rest is DRIFT's."""

    recipe: str = "drift"
    gamma: float = 0.9
    repetition_coef: float = 0.5
    beta: float = 0.1
    normalization: str = "group"
    loss_normalization: str = "mean"
    weight_cap: float | None = None
    weighting: str = "drift"
    train_turns: str = "last"
    epochs: int = 1
    rounds: int = 1
    max_prompts: int | None = None
    prompts_per_shard: int = 16
    shards_in_flight: int = 2
    shuffle_window: int = 64
    store_dir: str = "drift_store"
    store: str | None = None
    phases: list[str] = dataclasses.field(default_factory=lambda: list(PHASES))
    seed: int = 0
    console: str = "auto"  # auto | quiet | full: the console of python -m drift_verl.main (integration/quiet.py)
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    health: HealthConfig = dataclasses.field(default_factory=HealthConfig)

    def __post_init__(self):
        _check(self.recipe in ("drift", "grpo"), "recipe", "drift or grpo (set by recipe=...)", self.recipe)
        _check(self.console in CONSOLE_MODES, "console", "auto, quiet or full", self.console)
        _check(_number(self.gamma) and 0 < self.gamma <= 1, "gamma", "a number in (0, 1]", self.gamma)
        _check(_number(self.beta) and self.beta > 0, "beta", "a number > 0", self.beta)
        _check(_number(self.repetition_coef) and self.repetition_coef >= 0, "repetition_coef", "a number >= 0",
               self.repetition_coef)
        _check(normalization_name(self.normalization) in NORMALIZATIONS, "normalization",
               "group or store (alias: batch)", self.normalization)
        self.normalization = normalization_name(self.normalization)
        _check(self.loss_normalization in LOSS_NORMALIZATIONS, "loss_normalization", "mean or weight_sum",
               self.loss_normalization)
        _check(self.weight_cap is None or (_number(self.weight_cap) and self.weight_cap > 0), "weight_cap",
               "null or a number > 0", self.weight_cap)
        _check(self.weighting in ("drift", "uniform", "rejection"), "weighting", "drift, uniform or rejection",
               self.weighting)
        _check(self.train_turns in ("last", "all"), "train_turns", "last or all", self.train_turns)
        for key in ("epochs", "rounds", "prompts_per_shard", "shards_in_flight", "shuffle_window"):
            value = getattr(self, key)
            _check(isinstance(value, int) and value >= 1, key, "an integer >= 1", value)
        _check(self.max_prompts is None or (isinstance(self.max_prompts, int) and self.max_prompts >= 1),
               "max_prompts", "null or an integer >= 1", self.max_prompts)
        self.phases = list(self.phases)
        _check(self.phases in PHASE_CHOICES, "phases", " or ".join(f"[{','.join(p)}]" for p in PHASE_CHOICES),
               self.phases)
        _check(self.store is None or "rollouts" not in self.phases, "store",
               "null unless drift.phases=[weights,update] (a store to train from is not rolled out)", self.store)
        _check(self.rounds == 1 or self.phases == list(PHASES), "rounds",
               "1 with drift.phases other than all three (each round rolls out from the last one's policy)", self.rounds)

    @property
    def rolls_out(self) -> bool:
        return "rollouts" in self.phases

    @property
    def trains(self) -> bool:
        return "update" in self.phases

    def weight_config(self) -> WeightConfig:
        return WeightConfig(gamma=self.gamma, beta=self.beta, repetition_coef=self.repetition_coef,
                            normalization=self.normalization, cap=self.weight_cap, weighting=self.weighting)

    @classmethod
    def from_section(cls, section: Any) -> DriftConfig:
        """From the composed config's ``drift`` node (resolved) or a plain mapping."""
        from omegaconf import DictConfig, OmegaConf

        if isinstance(section, DictConfig):
            section = OmegaConf.to_container(section, resolve=True)
        return _build(cls, section, "")


def _train_rows(files) -> int:
    import pyarrow.parquet as pq

    files = [files] if isinstance(files, str) else list(files)
    return sum(pq.ParquetFile(str(f)).metadata.num_rows for f in files)


def check_job(config, drift: DriftConfig) -> None:
    """The checks that need more than the ``drift`` section; run in the driver before Ray starts."""
    from drift_verl.integration.verifier import load_function

    verifier = config.reward.get("custom_reward_function") or {}
    if verifier.get("path"):
        try:
            load_function(str(verifier.path), str(verifier.name))
        except Exception as error:  # any import failure of the user's file
            raise ConfigError(f"reward.custom_reward_function: {verifier.path} (function {verifier.name!r}) does "
                              f"not load: {type(error).__name__}: {error}") from None
    budget = int(config.data.max_response_length)
    if drift.env.turn_max_tokens is not None and drift.env.turn_max_tokens > budget:
        raise ConfigError(f"drift.env.turn_max_tokens={drift.env.turn_max_tokens}: larger than the whole response "
                          f"budget data.max_response_length={budget} (all turns and feedback messages together)")
    if config.algorithm.adv_estimator == "grpo_turn" and not config.trainer.get("use_v1", False):
        raise ConfigError("algorithm.adv_estimator=grpo_turn needs trainer.use_v1=true (verl's legacy trainer puts "
                          "the whole return at the last token, so every turn would get the same credit)")
    if drift.recipe != "drift":
        return
    if drift.store:
        from drift_verl.core.store import open_for_training

        open_for_training(drift.store, config)  # a foreign or mismatched store ends the job before Ray starts
        return
    prompts = _train_rows(config.data.train_files)
    if drift.max_prompts:
        prompts = min(prompts, drift.max_prompts)
    mini_batch = int(config.actor_rollout_ref.actor.ppo_mini_batch_size)
    if prompts < mini_batch:
        raise ConfigError(f"drift.max_prompts / data.train_files give {prompts} training prompts, fewer than one "
                          f"mini-batch (actor_rollout_ref.actor.ppo_mini_batch_size={mini_batch} prompts): lower "
                          "ppo_mini_batch_size or use more prompts")

"""Running a composed config as a verl job: recipe and platform checks, the typed ``drift:`` section checked before
Ray starts, verl's own ``main_ppo`` body under the job monitor (:mod:`drift_verl.main`, :mod:`drift_verl.eval`).

verl's own ``main_ppo`` body runs on a config composed from verl's ``ppo_trainer`` plus drift-verl's config
groups (``task``, ``recipe``, ``platform``). The same groups reach ``python -m verl.trainer.main_ppo`` through
the Hydra search-path plugin (``+recipe=drift +task=tiny +platform=cpu``).
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

import verl  # noqa: F401  (loads drift_verl.integration.plugin like every verl process does)
from drift_verl.core.store import StoreError
from drift_verl.integration import console
from drift_verl.integration.config import ConfigError, DriftConfig, check_job
from drift_verl.integration.health import PREFIX, JobMonitor
from drift_verl.platform import cpu as platform_cpu

RECIPES = ("grpo", "drift")


class StartupError(SystemExit):
    """A configuration problem found before any worker starts; the message says what to change."""

    def __init__(self, message: str):
        super().__init__(f"drift-verl: {message}")


class JobFailed(SystemExit):
    """A part of the running job died or wedged: one line naming it and its log, exit status 1."""

    def __init__(self, line: str):
        super().__init__(PREFIX + line)


def check_recipe(config: DictConfig) -> str:
    """The recipe that took effect, or a loud error: a silently ignored recipe would run plain PPO."""
    recipe = OmegaConf.select(config, "drift.recipe", default=None)
    if recipe not in RECIPES:
        raise StartupError(
            f"no drift-verl recipe took effect (drift.recipe={recipe!r}, expected one of {RECIPES}). "
            "Use `python -m drift_verl.main recipe=drift`, or `python -m verl.trainer.main_ppo +recipe=drift` "
            "with drift-verl installed (its Hydra search-path plugin provides the recipe group)."
        )
    return recipe


def check_platform(config: DictConfig) -> None:
    """On a machine without a GPU, insist on the CPU preset instead of failing deep inside a worker."""
    import torch

    on_cpu = config.trainer.device == "cpu"
    if on_cpu and not platform_cpu.cpu_platform_selected():
        os.environ["VERL_PLATFORM"] = platform_cpu.CPU_PLATFORM
        platform_cpu.activate()
    if not on_cpu and not torch.cuda.is_available():
        raise StartupError("no GPU found on this machine. Add the CPU preset: `platform=cpu`.")
    if on_cpu and OmegaConf.select(config, "actor_rollout_ref.model.use_liger", default=False):
        raise StartupError("actor_rollout_ref.model.use_liger=true: liger-kernel's fused kernels are Triton kernels, "
                           "which have no CPU backend (the first update would fail). Leave it off with platform=cpu.")


def run(config: DictConfig) -> None:
    check_recipe(config)
    check_platform(config)
    from verl.trainer.main_ppo import main as verl_main

    try:
        drift = DriftConfig.from_section(config.drift)
        check_job(config, drift)
    except (ConfigError, StoreError) as error:
        raise StartupError(str(error)) from None
    with console.on_terminal():  # the embedded reference policy is built here on first use, its bar on the terminal
        str(config.actor_rollout_ref.model.path)
    with JobMonitor(drift.health) as monitor:
        try:
            verl_main.__wrapped__(config)  # verl's own main body: auto_set_device, validate_config, run_ppo
        except BaseException as error:  # the monitor's interrupt, or an error from a part of the job that died
            line = monitor.diagnose(error)
            if line is None:
                raise
            monitor.shut_down_ray()
            raise JobFailed(line) from None

"""``python -m drift_verl.main recipe=drift|grpo [task=...] [platform=cpu] [verl overrides...]``: verl's
``ppo_trainer`` config with drift-verl's config groups on top (``recipes/drift_main.yaml``), checked before Ray
starts, then verl's own ``run_ppo`` under the job monitor (:func:`run`, also ``python -m drift_verl.eval``'s job).

The same groups reach ``python -m verl.trainer.main_ppo +recipe=drift +task=tiny +platform=cpu`` through
drift-verl's verl plugin, which puts them on Hydra's search path; there the monitor comes from the recipe's Hydra
callback (:mod:`drift_verl.integration.job.hydra_hooks`) and the platform from the cpu preset's
(:mod:`drift_verl.platform.cpu`). This module imports verl only inside its functions: the job's console
(:mod:`drift_verl.integration.job.quiet`: quiet for the embedded task, verl's own otherwise) is chosen first, so
what verl prints as it loads goes where the console says.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from drift_verl.core.config import ConfigError, DriftConfig
from drift_verl.core.store import StoreError
from drift_verl.integration.job import console
from drift_verl.integration.job.config import check_job
from drift_verl.integration.job.health import PREFIX, JobMonitor
from drift_verl.integration.job.quiet import held_until_chosen, job_console
from drift_verl.integration.training.store_identity import check_own_store

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
            "with drift-verl installed (its verl plugin puts the recipe group on Hydra's search path)."
        )
    return recipe


def check_platform(config: DictConfig) -> None:
    """On a machine without a GPU, insist on the CPU preset instead of failing deep inside a worker."""
    import torch

    from drift_verl.platform import cpu as platform_cpu

    on_cpu = config.trainer.device == "cpu"
    if on_cpu and not platform_cpu.cpu_platform_selected():  # the preset's Hydra callback selects it as the job starts
        raise StartupError("trainer.device=cpu runs on drift-verl's cpu platform, which the CPU preset selects: add "
                           "`platform=cpu` (the preset) instead of setting trainer.device alone.")
    if not on_cpu and not torch.cuda.is_available():
        raise StartupError("no GPU found on this machine. Add the CPU preset: `platform=cpu`.")
    if on_cpu and OmegaConf.select(config, "actor_rollout_ref.model.use_liger", default=False):
        raise StartupError("actor_rollout_ref.model.use_liger=true: liger-kernel's fused kernels are Triton kernels, "
                           "which have no CPU backend (the first update would fail). Leave it off with platform=cpu.")


def trains_drift(config: DictConfig) -> bool:
    """A job of DRIFT's trainer that works on a store (not ``python -m drift_verl.eval``'s validation only)."""
    return (OmegaConf.select(config, "trainer.v1.trainer_mode", default=None) == "drift"
            and not OmegaConf.select(config, "trainer.val_only", default=False))


def run(config: DictConfig) -> None:
    check_recipe(config)
    check_platform(config)
    try:
        drift = DriftConfig.from_section(config.drift)
        check_job(config, drift)
    except (ConfigError, StoreError) as error:
        raise StartupError(str(error)) from None
    with console.on_terminal():  # the embedded reference policy is built here on first use, its bar on the terminal
        str(config.actor_rollout_ref.model.path)
    try:  # a damaged store of an earlier run of this job ends it in seconds, not after Ray and vLLM start
        if trains_drift(config) and not drift.store:
            check_own_store(config, drift)
    except StoreError as error:
        raise StartupError(str(error)) from None
    with JobMonitor(drift.health) as monitor:
        try:
            run_verl(config)
        except BaseException as error:  # the monitor's interrupt, or an error from a part of the job that died
            line = monitor.diagnose(error)
            if line is None:
                raise
            monitor.shut_down_ray()
            raise JobFailed(line) from None


def run_verl(config: DictConfig) -> None:
    """What verl's ``main_ppo.main`` does with its composed config (its Hydra wrapper aside): verl's device check
    and config validation, then ``run_ppo`` with verl's TaskRunner, which builds the trainer that
    ``trainer.v1.trainer_mode`` names (``drift``: :mod:`drift_verl.integration.training.trainer`)."""
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    if config.trainer.use_v1:
        run_ppo(config, task_runner_class=TaskRunnerV1)
    else:  # verl's legacy trainer (recipe=grpo only: recipe=drift's trainer is a v1 trainer)
        from verl.trainer.main_ppo_v0 import TaskRunner

        run_ppo(config, task_runner_class=TaskRunner)


@hydra.main(config_path="pkg://recipes", config_name="drift_main", version_base=None)
def main(config: DictConfig) -> None:
    with job_console(config):
        run(config)


if __name__ == "__main__":
    with held_until_chosen():  # Hydra imports verl to compose the config: its warnings wait for the console's choice
        main()

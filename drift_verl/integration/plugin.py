"""verl plugin entry point (``verl.plugins`` group): verl imports it on every ``import verl``.

That is every process of a run (driver, TaskRunner, Ray workers), so registrations made here are seen
everywhere. verl swallows plugin import errors at debug level; ``tests/integration/test_plugin.py`` checks in a Ray worker
that the registrations really happened.
"""

from __future__ import annotations

import os
import re
import sys

from omegaconf import OmegaConf

from drift_verl.tiny import assets
from drift_verl.platform import cpu as platform_cpu
from drift_verl.integration.import_hooks import when_imported

_CLI_PLATFORM = re.compile(r"^\+{0,2}platform=(\w+)$")
_CLI_RECIPE = re.compile(r"^\+{0,2}recipe=")


def _platform_from_cli(argv: list[str]) -> str | None:
    """The ``platform=...`` Hydra override of this process's command line, if any.

    verl resolves its platform before Hydra composes the config, so the driver of
    ``python -m verl.trainer.main_ppo +platform=cpu`` learns it from the command line.
    """
    for arg in argv[1:]:
        match = _CLI_PLATFORM.match(arg)
        if match:
            return match.group(1)
    return None


def check_search_path_plugin(argv: list[str]) -> None:
    """Fail loudly when a ``recipe=`` override cannot reach drift-verl's configs.

    Without the Hydra search-path plugin, ``main_ppo +recipe=drift`` silently becomes a plain config key and
    plain PPO runs. Raised as SystemExit: verl swallows ordinary exceptions from plugins.
    """
    args = argv[1:]
    if not any(_CLI_RECIPE.match(arg) for arg in args) or any("pkg://recipes" in arg for arg in args):
        return
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    found = {cls.__name__ for cls in Plugins.instance().discover(SearchPathPlugin)}
    if "DriftVerlSearchPathPlugin" not in found:
        raise SystemExit(
            "drift-verl: `recipe=` was given but Hydra cannot see drift-verl's search-path plugin, so the recipe "
            "would be ignored. Install drift-verl with `bash scripts/setup.sh` (an editable install needs "
            "--config-settings editable_mode=compat), or pass hydra.searchpath=[pkg://recipes]."
        )


def monitor_main_ppo(argv: list[str]) -> None:
    """The driver of ``python -m verl.trainer.main_ppo +recipe=...`` gets the job monitor that
    ``drift_verl.main`` runs (default ``drift.health`` bounds): a dead engine or actor ends the job."""
    if not argv or not argv[0].endswith(os.path.join("verl", "trainer", "main_ppo.py")):
        return
    if any(_CLI_RECIPE.match(arg) for arg in argv[1:]):
        import atexit

        from drift_verl.integration.health import HealthConfig, JobMonitor

        monitor = JobMonitor(HealthConfig(), announce=True).__enter__()  # a daemon thread while the process runs
        atexit.register(monitor.__exit__)  # what dies at shutdown is no failure


def _register_trainer(_module) -> None:
    import drift_verl.integration.trainer  # noqa: F401  (@register_trainer("drift"))


def _register_algorithms(core_algos) -> None:
    from drift_verl.core import turn_credit
    from drift_verl.core.loss import register

    register(core_algos)  # the weighted-NLL policy loss
    if turn_credit.NAME not in core_algos.ADV_ESTIMATOR_REGISTRY:
        core_algos.register_adv_est(turn_credit.NAME)(turn_credit.turn_level_advantage)


def _register_agent_loop(_module) -> None:
    import drift_verl.integration.feedback_loop  # noqa: F401  (@register("drift_feedback"))


def register() -> None:
    check_search_path_plugin(sys.argv)
    monitor_main_ppo(sys.argv)
    # verl's registries live in modules that are slow to import: register when verl imports them
    when_imported("verl.trainer.ppo.core_algos", _register_algorithms)
    when_imported("verl.trainer.ppo.v1.trainer_base", _register_trainer)
    when_imported("verl.experimental.agent_loop.agent_loop", _register_agent_loop)
    if _platform_from_cli(sys.argv) == platform_cpu.CPU_PLATFORM:
        os.environ.setdefault("VERL_PLATFORM", platform_cpu.CPU_PLATFORM)
    platform_cpu.activate()
    if not OmegaConf.has_resolver("drift_asset"):
        OmegaConf.register_new_resolver("drift_asset", assets.resolve)


register()

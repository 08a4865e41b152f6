"""The job monitor for ``python -m verl.trainer.main_ppo +recipe=...``, through Hydra's job callbacks.

verl's entry point runs no recipe code in its driver, where the monitor must run (it interrupts the driver's main
thread and stops Ray). Hydra calls the callbacks a config names (``hydra.callbacks``) around the job, and
``recipes/recipe/common.yaml`` names :class:`JobMonitorCallback`: any Hydra entry point that composes a drift-verl
recipe gets the monitor. drift-verl's own entry points start it themselves, around verl's ``run_ppo``, where they
turn what it finds into their last line (:mod:`drift_verl.main`); Hydra tells them apart by their
primary config (``hydra.job.config_name``).
"""

from __future__ import annotations

from hydra.experimental.callback import Callback

from drift_verl.core.config import ConfigError, DriftConfig
from drift_verl.integration.job.health import JobMonitor

OWN_ENTRY_POINTS = ("drift_main", "drift_eval")  # primary configs of python -m drift_verl.main / drift_verl.eval


class JobMonitorCallback(Callback):
    """The monitor of :mod:`drift_verl.integration.job.health` for the whole job, with ``drift.health``'s bounds; it
    prints the line itself (``announce``), as no drift-verl code is there to report it."""

    def __init__(self):
        self.monitor: JobMonitor | None = None

    def on_job_start(self, config, **kwargs) -> None:
        if config.hydra.job.config_name in OWN_ENTRY_POINTS:
            return
        try:
            health = DriftConfig.from_section(config.drift).health
        except ConfigError as error:  # Hydra turns a callback's exceptions into warnings; SystemExit ends the job
            raise SystemExit(f"drift-verl: {error}") from None
        self.monitor = JobMonitor(health, announce=True).__enter__()  # a daemon thread while the job runs

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if self.monitor is not None:
            self.monitor.__exit__()  # what dies at shutdown is no failure

"""Run a drift-verl job as a user would (a subprocess of ``python -m drift_verl.main``) and read its metrics.

Used by the end-to-end tests and by ``scripts/compare.py`` and ``scripts/bench/rollout.py``: metrics come from
verl's own file logger (``trainer.logger=[console,file]``, one JSON line per logged step), which
``drift_verl.main`` points into the run folder it names on its first line (:mod:`drift_verl.integration.job.run_files`).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from drift_verl.integration.job.run_files import ENV as FILE_LOGGER_ENV, read_metrics_file, read_run_metrics

RUN_FOLDER = re.compile(r"^drift-verl: run folder: (.+)$", re.M)
FILE_LOGGER = re.compile(r"Creating file logger at (\S+\.jsonl)")  # verl's own line, where no run folder is named


def read_metrics(path: Path) -> dict[int, dict]:
    """verl's file logger output -> {step: metrics}: one file, or a run folder (its attempts joined in order)."""
    return read_run_metrics(path) if Path(path).is_dir() else read_metrics_file(path)


def run_job(argv: list[str], workdir: Path, timeout: int = 900, env: dict | None = None):
    """Run ``python <argv>`` in ``workdir`` (with ``env`` added to the environment); returns (process, metrics,
    wall seconds): the metrics of the run folder the job names (or of ``VERL_FILE_LOGGER_PATH`` when ``env``
    sets it), {} when it names none or logged none. The output (the console) is kept in ``job.log``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    extra = env or {}
    env = dict(os.environ, RAY_DEDUP_LOGS="0", PYTHONUNBUFFERED="1", **extra)
    if FILE_LOGGER_ENV not in extra:
        env.pop(FILE_LOGGER_ENV, None)  # the job's own choice: its run folder
    start = time.time()
    # its own session, so that a timeout (or the test's) also ends the Ray and vLLM processes it started
    job = subprocess.Popen([sys.executable, *argv], cwd=workdir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, start_new_session=True)
    try:
        stdout, stderr = job.communicate(timeout=timeout)
    except BaseException:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    # decoded here, not in text mode: a progress bar's carriage returns stay (the console as a terminal shows it)
    proc = subprocess.CompletedProcess(job.args, job.returncode, stdout.decode("utf-8", "replace"),
                                       stderr.decode("utf-8", "replace"))
    (workdir / "job.log").write_text(proc.stdout + proc.stderr)
    wall = time.time() - start
    return proc, _job_metrics(proc, workdir, env.get(FILE_LOGGER_ENV)), wall


def _job_metrics(proc: subprocess.CompletedProcess, workdir: Path, chosen: str | None) -> dict[int, dict]:
    if chosen:
        path = workdir / chosen
        return read_metrics(path) if path.exists() else {}
    output = proc.stdout + proc.stderr
    folder = RUN_FOLDER.search(output)
    if folder:
        return read_metrics(Path(folder.group(1))) if Path(folder.group(1)).is_dir() else {}
    logged = FILE_LOGGER.findall(output)  # python -m verl.trainer.main_ppo +recipe=grpo: verl's default place
    path = workdir / logged[-1] if logged else None
    return read_metrics(path) if path and path.is_file() else {}


def tail(proc: subprocess.CompletedProcess, n: int = 60) -> str:
    return "\n".join(((proc.stdout or "") + (proc.stderr or "")).splitlines()[-n:])

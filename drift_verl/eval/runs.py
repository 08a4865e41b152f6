"""Run a drift-verl job as a user would (a subprocess of ``python -m drift_verl.main``) and read its metrics.

Used by the end-to-end tests and by ``scripts/compare.py`` and ``scripts/bench/rollout.py``: metrics come from
verl's own file logger (``trainer.logger=[console,file]``, one JSON line per logged step).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def read_metrics(path: Path) -> dict[int, dict]:
    """verl's file logger output -> {step: metrics}."""
    steps: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["data"])
    return steps


def run_job(argv: list[str], workdir: Path, timeout: int = 900, env: dict | None = None):
    """Run ``python <argv>`` in ``workdir`` with verl's file logger on (and ``env`` added to the environment);
    returns (process, metrics, wall seconds). The output is kept in ``job.log``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    metrics = workdir / "metrics.jsonl"
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(metrics), RAY_DEDUP_LOGS="0", PYTHONUNBUFFERED="1", **(env or {}))
    start = time.time()
    # its own session, so that a timeout (or the test's) also ends the Ray and vLLM processes it started
    job = subprocess.Popen([sys.executable, *argv], cwd=workdir, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = job.communicate(timeout=timeout)
    except BaseException:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    proc = subprocess.CompletedProcess(job.args, job.returncode, stdout, stderr)
    (workdir / "job.log").write_text(proc.stdout + proc.stderr)
    wall = time.time() - start
    return proc, (read_metrics(metrics) if metrics.exists() else {}), wall


def tail(proc: subprocess.CompletedProcess, n: int = 60) -> str:
    return "\n".join(((proc.stdout or "") + (proc.stderr or "")).splitlines()[-n:])

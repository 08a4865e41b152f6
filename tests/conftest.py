import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from drift_verl import assets

    return assets.tiny_model()


def read_metrics(path: Path) -> dict[int, dict]:
    """verl's file logger output: one JSON line per step -> {step: metrics}."""
    steps: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        steps.setdefault(record["step"], {}).update(record["data"])
    return steps


def run_job(argv: list[str], workdir: Path, timeout: int = 900) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a training command as a user would, with verl's file logger on; returns (process, metrics)."""
    metrics = workdir / "metrics.jsonl"
    env = dict(os.environ, VERL_FILE_LOGGER_PATH=str(metrics), RAY_DEDUP_LOGS="0", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    (workdir / "job.log").write_text(proc.stdout + proc.stderr)
    return proc, (read_metrics(metrics) if metrics.exists() else {})


def tail(proc: subprocess.CompletedProcess, n: int = 60) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-n:])

import subprocess
from pathlib import Path

import pytest

from drift_verl import runs
from drift_verl.runs import read_metrics, tail  # noqa: F401  (used by the e2e tests)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from drift_verl import assets

    return assets.tiny_model()


def run_job(argv: list[str], workdir: Path, timeout: int = 900) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a training command as a user would, with verl's file logger on; returns (process, metrics)."""
    proc, metrics, _ = runs.run_job(argv, workdir, timeout)
    return proc, metrics

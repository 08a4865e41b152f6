import os
import subprocess
from pathlib import Path

import pytest

from drift_verl.eval import runs
from drift_verl.eval.runs import read_metrics, tail  # noqa: F401  (used by the e2e tests)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

# The e2e tests' setting: the untrained tiny model (no 6-minute reference build in CI), N=4, greedy validation and
# the recipe's single epoch, so the figures they assert on stay small; the embedded default itself is checked by
# the config tests and run in full by the README's main-job command.
SMALL_TASK = [
    "actor_rollout_ref.model.path=${drift_asset:tiny_model}",
    "actor_rollout_ref.rollout.n=4",
    "actor_rollout_ref.rollout.val_kwargs.do_sample=false",
    "actor_rollout_ref.rollout.val_kwargs.n=1",
    "actor_rollout_ref.actor.optim.lr=1e-3",
    "drift.epochs=1",
]


def pytest_collection_modifyitems(items):
    """Fast tests first, then the install resolutions, then end-to-end runs; and every end-to-end test has a
    pytest-timeout: a hang must fail one test, not spend CI's whole budget."""
    untimed = [item.nodeid for item in items if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout")]
    if untimed:
        raise pytest.UsageError(f"e2e tests without @pytest.mark.timeout: {untimed}")
    items.sort(key=lambda item: (bool(item.get_closest_marker("e2e")), bool(item.get_closest_marker("install"))))


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from drift_verl.tiny import assets

    return assets.tiny_model()


def run_job(argv: list[str], workdir: Path, timeout: int = 900, env: dict | None = None
            ) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a training command as a user would, with verl's file logger on; returns (process, metrics)."""
    proc, metrics, _ = runs.run_job(argv, workdir, timeout, env)
    return proc, metrics


def with_fixture_hooks(**variables: str) -> dict:
    """Environment that activates tests/fixtures/faults/sitecustomize.py in every process of a job."""
    return {"PYTHONPATH": os.pathsep.join([str(FIXTURES / "faults"), os.environ.get("PYTHONPATH", "")]), **variables}

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drift_verl.eval import runs
from drift_verl.eval.runs import read_metrics, tail  # noqa: F401  (used by the e2e tests)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


def load_compare():
    """``scripts/compare.py`` (a script, not a package module) as the module ``compare``, loaded once."""
    import importlib.util

    if "compare" not in sys.modules:
        spec = importlib.util.spec_from_file_location("compare", REPO / "scripts" / "compare.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["compare"] = module  # its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["compare"]

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
    "drift.non_repeat_contexts=0",  # the summary's fixed-context repeats: the main job's test checks them
    "actor_rollout_ref.actor.checkpoint.save_contents=[model,optimizer,extra]",
    # the tiny task's sizes (task/tiny.yaml), which recipe=drift's main-job settings (task_recipe/tiny_drift.yaml)
    # raise: 64 training prompts, 16 dev problems
    "data.train_max_samples=64",
    "data.val_max_samples=16",
    "data.val_batch_size=16",
]


def pytest_collection_modifyitems(items):
    """Fast tests first, then the install resolutions, then end-to-end runs; and every end-to-end test has a
    pytest-timeout: a hang must fail one test, not spend CI's whole budget."""
    untimed = [item.nodeid for item in items if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout")]
    if untimed:
        raise pytest.UsageError(f"e2e tests without @pytest.mark.timeout: {untimed}")
    items.sort(key=lambda item: (bool(item.get_closest_marker("e2e")), bool(item.get_closest_marker("install"))))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure's traceback and a slow phase's time, printed when they happen: a CI run cut off by its time limit
    still shows what failed and where the minutes went (pytest prints both only at the end)."""
    report = (yield).get_result()
    reporter = item.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    if report.failed:
        reporter.write_line(f"\nFAILED {item.nodeid} ({report.when}), after {report.duration:.0f} s:")
        reporter.write_line(report.longreprtext[-6000:])
    elif report.duration > 30:
        reporter.write_line(f"\n[{report.duration:.0f} s] {item.nodeid} ({report.when})")


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    from drift_verl.tiny import assets

    return assets.tiny_model()


def run_job(argv: list[str], workdir: Path, timeout: int = 900, env: dict | None = None
            ) -> tuple[subprocess.CompletedProcess, dict]:
    """Run a training command as a user would; returns (process, metrics from verl's file logger in the run folder
    the job names, when the command turns it on)."""
    proc, metrics, _ = runs.run_job(argv, workdir, timeout, env)
    return proc, metrics


def import_rows(rows: list[dict], workdir: Path, model: str) -> Path:
    """Store rows exported in the paper reference implementation's format (rewards, answers, messages: what
    another engine would write) and imported with ``python -m drift_verl.store import``: the new store's folder."""
    source = workdir / "made_elsewhere.jsonl"
    source.write_text("".join(json.dumps({
        "prompt_id": r["prompt_id"], "turn_rewards": {f"t{i + 1}": x for i, x in enumerate(r["turn_rewards"])},
        "answer_norms": r["answers"], "format_penalty": r["format_penalty"], "messages": json.loads(r["messages"]),
        "data_source": r["data_source"], "ground_truth": r["ground_truth"]}) + "\n" for r in rows))
    done = subprocess.run([sys.executable, "-m", "drift_verl.store", "import", str(source), "--model", model,
                           "--out", str(workdir / "imported")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (store,) = [p for p in (workdir / "imported").iterdir() if p.is_dir()]
    return store


def with_fixture_hooks(**variables: str) -> dict:
    """Environment that activates tests/fixtures/faults/drift_faults.py in every process of a job that imports verl
    (verl's own hook for external modules)."""
    return {"PYTHONPATH": os.pathsep.join([str(FIXTURES / "faults"), os.environ.get("PYTHONPATH", "")]),
            "VERL_USE_EXTERNAL_MODULES": "drift_faults", **variables}

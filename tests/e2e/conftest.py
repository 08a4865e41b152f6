"""The README's main-job command, run once per session on a shortened setting (fewer prompts and validation
samples): its own test checks what a newcomer sees, and the LoRA test trains from its store against its steps
(each job here costs 2-3 minutes of start-up on 2 cores)."""

import re

import pytest

from tests.conftest import REPO, run_job, tail

SHORTER = ["drift.max_prompts=16", "drift.epochs=8", "data.val_max_samples=16", "actor_rollout_ref.rollout.val_kwargs.n=4",
           "trainer.logger=[console,file]"]


def readme_main_job() -> list[str]:
    """The arguments after ``.venv/bin/python`` in the README's set-up command for the main job."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^bash scripts/setup\.sh && \.venv/bin/python (-m drift_verl\.main[^\n]*)$", readme, re.M)
    assert match, "README: the main-job set-up command is missing"
    return match.group(1).split()


@pytest.fixture(scope="session")
def main_job(tmp_path_factory):
    """(workdir, process, metrics) of the README's main job with :data:`SHORTER`; its store is
    ``<workdir>/drift_store``."""
    workdir = tmp_path_factory.mktemp("main_job")
    proc, metrics = run_job([*readme_main_job(), *SHORTER], workdir, timeout=840)
    assert proc.returncode == 0, tail(proc)
    return workdir, proc, metrics

"""The README's main-job command, as written there, on a shortened setting (fewer prompts and validation
samples). The embedded reference policy is the real one: built by verl's SFT trainer on first use (about 6
minutes on 2 cores) and cached."""

import re

import pytest

from tests.conftest import REPO, run_job, tail

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

SHORTER = ["drift.max_prompts=16", "drift.epochs=2", "actor_rollout_ref.rollout.val_kwargs.n=4",
           "trainer.logger=[console,file]"]


def readme_main_job() -> list[str]:
    """The arguments after ``.venv/bin/python`` in the README's set-up command for the main job."""
    readme = (REPO / "README.md").read_text()
    match = re.search(r"^bash scripts/setup\.sh && \.venv/bin/python (-m drift_verl\.main[^\n]*)$", readme, re.M)
    assert match, "README: the main-job set-up command is missing"
    return match.group(1).split()


def test_readme_main_job_runs_and_prints_the_summary(tmp_path):
    proc, metrics = run_job([*readme_main_job(), *SHORTER], tmp_path, timeout=1700)
    assert proc.returncode == 0, tail(proc)
    output = proc.stdout + proc.stderr
    assert "DRIFT finished" in output
    summary = output.split("DRIFT finished")[1]
    assert re.search(r"validation drift_tiny_add: step 0 -> step 8", summary), summary[:2000]
    for name in ("solved_within_1", "solved_within_5", "non_repeat_ratio"):
        assert re.search(rf"{name}\s+\d\.\d{{3}} ->\s+\d\.\d{{3}}", summary), name
    # the embedded reference policy answers: 16 prompts x 8 samples, about 60% solved within 5 turns
    assert metrics[0]["drift/reference/solved_within_5"] > 0.2
    assert metrics[8]["training/global_step"] == 8

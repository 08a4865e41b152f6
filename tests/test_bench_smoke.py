"""The benchmark scripts of scripts/bench/ run and print their ratio lines (CI checks they work, not speed)."""

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(script: str, timeout: int) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / script), "--smoke"], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_weight_pass_smoke():
    last = _run("weight_pass.py", timeout=60).strip().splitlines()[-1]
    assert re.fullmatch(r"1e\+04: [\d.]+ s \(target [\d.]+ s\) ratio [\d.]+; peak [\d.]+ GB \(target 2 GB\) "
                        r"ratio [\d.]+", last), last


def test_update_smoke():  # builds verl's FSDP actor in its process: about 20 s on 2 cores
    last = _run("update.py", timeout=600).strip().splitlines()[-1]
    assert re.fullmatch(r"tiny: drift \d+ tokens/s vs vanilla \d+ tokens/s ratio [\d.]+ "
                        r"\[[\d.]+-[\d.]+\] \(target >= 0.95\)", last), last


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_rollout_smoke():  # a DRIFT job (Ray, vLLM server) and a bare vLLM loop: about 3 minutes on 2 cores
    last = _run("rollout.py", timeout=900).strip().splitlines()[-1]
    assert re.fullmatch(r"ratio drift/bare generated tokens/s: median [\d.]+ \(range [\d.]+-[\d.]+, "
                        r"target >= 0.9\)", last), last


def test_verifier_smoke():  # the isolating verifier pool against in-process calls: a few seconds
    out = _run("verifier.py", timeout=300)
    lines = [line for line in out.splitlines() if "calls/s" in line]
    assert len(lines) == 2 and all(re.search(r"ratio pool/inline median [\d.]+", line) for line in lines), out

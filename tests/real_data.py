"""The real GSM8K / MATH500 files tests run on: 30-row samples committed under tests/fixtures/data, and the
full copies in ../shared/data when this checkout has them (that part is skipped where it does not, e.g. CI)."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "fixtures" / "data"
SHARED = REPO.parent / "shared" / "data"
FILES = ("gsm8k_train.jsonl", "gsm8k_test.jsonl", "math500_test.jsonl")


def copies(name: str) -> list:
    """pytest params for a file: the committed sample, then the full copy (skipped when absent)."""
    full = SHARED / name
    return [
        pytest.param(SAMPLES / name, id=f"sample-{name}"),
        pytest.param(full, id=f"full-{name}", marks=pytest.mark.skipif(not full.exists(), reason=f"no {full}")),
    ]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

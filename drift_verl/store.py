"""The trajectory store: parquet shards written by phase 1 and streamed by phases 2 and 3.

Layout: ``<root>/<fingerprint>/manifest.json`` + ``shard-00000.parquet`` ... The fingerprint hashes everything
that determines the rollouts (reference policy, data, N, environment, sampling), not beta/gamma, so any
sweep over the weights reuses one store. Each shard is written to a temporary file and renamed, so a killed
run leaves only whole shards: resuming regenerates exactly the shards that are missing, never duplicating
or losing a trajectory.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("sample", pa.int32()),  # index of the trajectory within its group
        ("data_source", pa.string()),
        ("ground_truth", pa.string()),
        ("prompt_ids", pa.list_(pa.int32())),
        ("response_ids", pa.list_(pa.int32())),
        ("response_mask", pa.list_(pa.int8())),  # 1 on assistant tokens, 0 on environment feedback
        ("turn_spans", pa.list_(pa.list_(pa.int32()))),  # [start, end) of each assistant turn in the response
        ("turn_rewards", pa.list_(pa.float32())),
        ("answers", pa.list_(pa.string())),  # normalised answer per turn, null when unparseable
        ("format_penalty", pa.float32()),
        ("t_star", pa.int32()),  # first solved turn, 0 when never solved
        ("verifier_failures", pa.int32()),
        ("messages", pa.string()),  # the conversation as chat messages (JSON)
    ]
)


def fingerprint(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_identity(path: str) -> dict:
    """Name and sizes of a file or a model directory's files: cheap, and changes when the weights change."""
    target = Path(path)
    if target.is_dir():
        return {p.name: p.stat().st_size for p in sorted(target.iterdir()) if p.is_file()}
    return {target.name: target.stat().st_size} if target.exists() else {"missing": str(path)}


@dataclass
class TrajectoryStore:
    root: Path
    spec: dict
    num_prompts: int
    prompts_per_shard: int

    def __post_init__(self):
        self.root = Path(self.root)
        self.dir = self.root / fingerprint(self.spec)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        expected = {"spec": self.spec, "num_prompts": self.num_prompts, "prompts_per_shard": self.prompts_per_shard}
        if manifest.exists():
            found = json.loads(manifest.read_text())
            if {k: found.get(k) for k in expected} != json.loads(json.dumps(expected, default=str)):
                raise ValueError(f"{manifest}: store was made with a different configuration; remove the folder")
        else:
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps(expected, indent=2, default=str))
            os.replace(tmp, manifest)

    @property
    def num_shards(self) -> int:
        return -(-self.num_prompts // self.prompts_per_shard)

    def shard_path(self, index: int) -> Path:
        return self.dir / f"shard-{index:05d}.parquet"

    def shard_prompts(self, index: int) -> range:
        start = index * self.prompts_per_shard
        return range(start, min(start + self.prompts_per_shard, self.num_prompts))

    def missing_shards(self) -> list[int]:
        return [i for i in range(self.num_shards) if not self.shard_path(i).exists()]

    def complete(self) -> bool:
        return not self.missing_shards()

    def write_shard(self, index: int, rows: list[dict]) -> None:
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        tmp = self.shard_path(index).with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.shard_path(index))

    def read_shard(self, index: int, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.shard_path(index), columns=columns)

    def shard_sizes(self) -> list[int]:
        return [pq.ParquetFile(self.shard_path(i)).metadata.num_rows for i in range(self.num_shards)]

    def iter_columns(self, columns: list[str]) -> Iterator[pa.Table]:
        """Stream the store shard by shard (never the whole store in memory)."""
        for index in range(self.num_shards):
            yield self.read_shard(index, columns)


def returns_and_groups(store: TrajectoryStore, gamma: float, repetition_coef: float):
    """Phase 2 input, streamed: (returns, prompt ids, solved) as flat arrays in store order."""
    from drift_verl.weights import trajectory_return

    returns, prompt_ids, solved = [], [], []
    columns = ["prompt_id", "turn_rewards", "answers", "format_penalty", "t_star"]
    for table in store.iter_columns(columns):
        for row in table.to_pylist():
            given = [a for a in row["answers"] if a is not None]
            returns.append(trajectory_return(row["turn_rewards"], row["format_penalty"], given, gamma, repetition_coef))
            prompt_ids.append(row["prompt_id"])
            solved.append(row["t_star"] > 0)
    return np.array(returns), prompt_ids, np.array(solved)

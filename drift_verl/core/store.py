"""The trajectory store: parquet shards written by phase 1 and streamed by phases 2 and 3.

Layout: ``<root>/<fingerprint>/manifest.json`` + ``shard-00000.parquet`` ... The fingerprint hashes a spec of
everything that determines the rollouts (reference policy, data, N, environment, sampling; a verl job's is read
by :mod:`drift_verl.integration.training.store_identity`, files by content: :mod:`drift_verl.core.identity`), not
beta/gamma, so any sweep over the weights reuses one store.
Each shard is written to a temporary file and renamed, so a killed run leaves only whole shards: resuming
regenerates exactly the shards that are missing, never duplicating or losing a trajectory.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from drift_verl.core import safe_io
from drift_verl.core.errors import ClearError
from drift_verl.core.weights import trajectory_returns

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
        # why the environment broke its contract and ended the trajectory (null or empty: it did not); such a
        # trajectory keeps its row (every prompt keeps its N) and trains with weight 0
        ("environment_failure", pa.string()),
    ]
)
SCHEMA_VERSION = 2  # the manifest's "schema_version"; a manifest without one is version 1
FEEDBACK_LOOP = "drift_feedback"  # DRIFT's own agent loop (the recipes' default_agent_loop)
# What only DRIFT's feedback loop (agent loop ``drift_feedback``) records. A store rolled out by another verl agent
# loop (its spec names it as "agent_loop") holds placeholders there, never data: no answers (so no repetition
# penalty), no format penalty, no verifier or environment failures, no messages, and for turn_rewards one value,
# the trajectory's reward (its return R). Its turn_spans are the runs of response_mask, t_star the last turn when
# that reward is >= 1.
FEEDBACK_LOOP_ONLY = ("answers", "format_penalty", "verifier_failures", "messages", "environment_failure",
                      "turn_rewards (one value: the trajectory's reward)")
SCHEMAS = {1: pa.schema([f for f in SCHEMA if f.name != "environment_failure"]), 2: SCHEMA}


def fields_without_the_feedback_loop(response_mask: list[int], rm_scores: list[float]) -> dict:
    """The store fields of a trajectory from another agent loop than drift_feedback (verl's ``single_turn_agent``,
    ``tool_agent``, a user's), which records none of them: its assistant turns are the runs of ``response_mask``
    (tool and environment tokens are 0), its reward the sum of ``rm_scores``; what only the feedback loop knows
    holds the placeholders :data:`FEEDBACK_LOOP_ONLY` describes."""
    spans, start = [], None
    for position, assistant in enumerate([*response_mask, 0]):
        if assistant and start is None:
            start = position
        elif not assistant and start is not None:
            spans.append([start, position])
            start = None
    reward = float(sum(rm_scores))
    return {"turn_spans": spans, "turn_rewards": [reward], "answers": [], "format_penalty": 0.0,
            "t_star": len(spans) if reward >= 1.0 else 0, "verifier_failures": 0, "messages": "",
            "environment_failure": ""}


def fingerprint(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StoreError(ClearError, ValueError):
    """A store file that cannot be trusted; the message names it and says what to do."""


@dataclass
class TrajectoryStore:
    root: Path
    spec: dict
    num_prompts: int
    prompts_per_shard: int

    def __post_init__(self):
        self.root = Path(self.root).resolve()  # messages name files by absolute path
        self.dir = self.root / fingerprint(self.spec)
        self.dir.mkdir(parents=True, exist_ok=True)
        manifest = self.dir / "manifest.json"
        expected = {"spec": self.spec, "num_prompts": self.num_prompts, "prompts_per_shard": self.prompts_per_shard}
        if manifest.exists():
            try:
                found = json.loads(manifest.read_text())
            except ValueError as error:
                raise StoreError(f"{manifest}: not a readable manifest ({error}); the store cannot be identified: "
                                 f"remove the folder {self.dir} to roll out anew") from None
            if not isinstance(found, dict) or (
                    {k: found.get(k) for k in expected} != json.loads(json.dumps(expected, default=str))):
                raise StoreError(f"{manifest}: this store was made with another configuration than its folder name "
                                 f"says (a foreign or edited manifest); remove the folder {self.dir} to roll out anew")
            self.schema_version = found.get("schema_version", 1)
            if self.schema_version not in SCHEMAS:
                raise StoreError(f"{manifest}: store schema version {self.schema_version!r}, which this drift-verl "
                                 f"does not read (versions {sorted(SCHEMAS)}); use the drift-verl that made it")
        else:
            self.schema_version = SCHEMA_VERSION
            safe_io.write_text(manifest, json.dumps({**expected, "schema_version": SCHEMA_VERSION}, indent=2,
                                                    default=str))

    @classmethod
    def open(cls, folder: str | Path) -> TrajectoryStore:
        """An existing store, from its folder (``<store_dir>/<fingerprint>``) and the manifest in it."""
        folder = Path(folder).resolve()
        manifest = folder / "manifest.json"
        if not manifest.is_file():
            raise StoreError(f"{manifest}: missing; {folder} is not a trajectory store (expected the folder "
                             "<drift.store_dir>/<fingerprint> a DRIFT run printed as its trajectory store)")
        try:
            found = json.loads(manifest.read_text())
            spec, num_prompts, per_shard = found["spec"], int(found["num_prompts"]), int(found["prompts_per_shard"])
        except (ValueError, KeyError, TypeError) as error:
            raise StoreError(f"{manifest}: not a readable manifest ({type(error).__name__}: {error}); restore it, or "
                             f"remove the folder {folder} to roll out anew") from None
        if fingerprint(spec) != folder.name:
            raise StoreError(f"{manifest}: its configuration's fingerprint is {fingerprint(spec)}, not the folder's "
                             f"name {folder.name} (an edited manifest, or a renamed folder)")
        return cls(folder.parent, spec, num_prompts, per_shard)

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

    @property
    def schema(self) -> pa.Schema:
        return SCHEMAS[self.schema_version]

    @property
    def agent_loop(self) -> str:
        """The verl agent loop that rolled the store out."""
        return (self.spec.get("agent_loop") or {}).get("name", FEEDBACK_LOOP)

    @property
    def absent_fields(self) -> tuple[str, ...]:
        """The fields this store holds placeholders in (:data:`FEEDBACK_LOOP_ONLY`, or none)."""
        return () if self.agent_loop == FEEDBACK_LOOP else FEEDBACK_LOOP_ONLY

    def write_shard(self, index: int, rows: list[dict]) -> None:
        self.write_table(index, pa.Table.from_pylist(rows, schema=SCHEMA))

    def write_table(self, index: int, table: pa.Table) -> None:
        """Write one shard atomically (a temporary file renamed into place). A store of an older schema is read
        (trained on, inspected), never added to: its shards would mix two schemas."""
        if self.schema_version != SCHEMA_VERSION:
            raise StoreError(f"{self.dir}: store schema version {self.schema_version} (made by an older drift-verl); "
                             f"it can be trained on and inspected, not completed: {len(self.missing_shards())} shard(s) "
                             "are missing. Finish it with the drift-verl that made it, or remove the folder to roll "
                             "out anew")
        if table.schema != SCHEMA:
            raise ValueError(f"shard {index}: schema differs from the store's:\n{table.schema}")
        with safe_io.atomic_path(self.shard_path(index)) as tmp:
            pq.write_table(table, tmp)

    def read_shard(self, index: int, columns: list[str] | None = None) -> pa.Table:
        with pq.ParquetFile(self.shard_path(index)) as shard:  # lighter than pq.read_table for one file
            return shard.read(columns=columns)

    def verify(self, samples_per_prompt: int, written_only: bool = False) -> None:
        """Every shard is present, a readable parquet file of the store's schema, with ``samples_per_prompt``
        rows per prompt; else :class:`StoreError` naming the shard. Run before a store is trained on.
        ``written_only``: the shards written so far (a store a job will resume filling)."""
        for index in range(self.num_shards):
            path = self.shard_path(index)
            if not path.exists():
                if written_only:
                    continue
                raise StoreError(f"{path}: missing; re-run the same command to roll it out (before the round's "
                                 "training started), or restore it")
            try:
                with pq.ParquetFile(path) as shard:
                    schema, rows = shard.schema_arrow, shard.metadata.num_rows
            except Exception as error:  # truncated or overwritten file: pyarrow raises several kinds
                raise StoreError(f"{path}: not a readable parquet shard ({type(error).__name__}: {error}); delete it "
                                 "and re-run the same command to roll it out again") from None
            expected = len(self.shard_prompts(index)) * samples_per_prompt
            if not schema.equals(self.schema) or rows != expected:
                raise StoreError(f"{path}: expected {expected} trajectories of the store's schema, found {rows}"
                                 f"{'' if schema.equals(self.schema) else ' with another schema'}; delete it and "
                                 "re-run the same command to roll it out again")

    def shard_sizes(self) -> list[int]:
        return [pq.ParquetFile(self.shard_path(i)).metadata.num_rows for i in range(self.num_shards)]

    def iter_columns(self, columns: list[str], prefetch: int = 4) -> Iterator[pa.Table]:
        """Stream the store shard by shard, in order (never the whole store in memory); up to ``prefetch``
        shards are read ahead in threads, which hides most of the per-file cost of many small shards."""
        with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool:
            ahead: deque[Future] = deque()
            for index in range(self.num_shards):
                ahead.append(pool.submit(self.read_shard, index, columns))
                if len(ahead) > prefetch:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()


WEIGHT_COLUMNS = ["prompt_id", "turn_rewards", "answers", "format_penalty", "t_star"]
WEIGHT_BATCH_ROWS = 1 << 16  # shards are read one by one and computed on in batches of about this many rows


def _list_layout(column: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """An Arrow list column as (flat values, length per row); a null list counts as empty."""
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy().astype(np.int64)
    return column.flatten(), lengths


def _batch_returns(table: pa.Table, gamma: float, repetition_coef: float, partial_credit: float):
    """(returns, prompt-id codes into the batch's own dictionary, that dictionary, solved) of one batch."""
    column = {name: table.column(name).combine_chunks() for name in WEIGHT_COLUMNS}
    for name in ("prompt_id", "format_penalty"):
        if column[name].null_count:
            raise ValueError(f"trajectory store: null {name!r} in a stored trajectory")
    rewards, reward_lengths = _list_layout(column["turn_rewards"])
    if rewards.null_count:
        raise ValueError("trajectory store: null turn reward in a stored trajectory")
    answers, answer_lengths = _list_layout(column["answers"])
    # equal answers get equal codes (exact, no hashing); a turn with no parseable answer gets -1
    answer_codes = pc.fill_null(pc.dictionary_encode(answers).indices, -1).to_numpy()
    returns = trajectory_returns(rewards.to_numpy(), reward_lengths, column["format_penalty"].to_numpy(),
                                 answer_codes, answer_lengths, gamma, repetition_coef, partial_credit)
    prompts = pc.dictionary_encode(column["prompt_id"])
    solved = pc.fill_null(pc.greater(column["t_star"], 0), False).to_numpy(zero_copy_only=False)
    return returns, prompts.indices.to_numpy(), prompts.dictionary, solved


def returns_and_groups(store: TrajectoryStore, gamma: float, repetition_coef: float, partial_credit: float = 0.0):
    """Phase 2 input, streamed and vectorised: ``(returns, groups, solved)`` as flat arrays in store order.

    ``returns`` is float64 (:func:`drift_verl.core.weights.trajectory_returns` of each trajectory); ``groups`` is one
    integer per trajectory, the same for trajectories with the same ``prompt_id`` (anywhere in the store), dense
    (``0 .. groups-1`` in order of first appearance), so :func:`drift_verl.core.weights.group_codes` keeps it as is;
    ``solved`` is bool (``t_star > 0``). Only the small columns are read, shard by shard; memory is O(rows)
    numbers plus one string per distinct prompt. A store of another agent loop holds one reward per trajectory:
    it is the return whole, graded or not (``partial_credit`` is for near-misses spread over turns).
    """
    if store.absent_fields:
        partial_credit = 1.0  # turn_shares then gives R = r for a single reward r
    returns, local_codes, dictionaries, solved = [], [], [], []
    pending: list[pa.Table] = []
    pending_rows = num_names = 0

    def flush():
        nonlocal pending, pending_rows, num_names
        batch_returns, codes, names, batch_solved = _batch_returns(pa.concat_tables(pending), gamma, repetition_coef,
                                                                   partial_credit)
        returns.append(batch_returns)
        local_codes.append(codes.astype(np.int64) + num_names)
        dictionaries.append(names)
        solved.append(batch_solved)
        num_names += len(names)
        pending, pending_rows = [], 0

    for table in store.iter_columns(WEIGHT_COLUMNS):
        pending.append(table)
        pending_rows += table.num_rows
        if pending_rows >= WEIGHT_BATCH_ROWS:
            flush()
    if pending_rows or not returns:
        pending = pending or [SCHEMA.empty_table().select(WEIGHT_COLUMNS)]
        flush()
    # one code per distinct prompt id across batches (a prompt never spans shards, but ids may repeat)
    to_group = pc.dictionary_encode(pa.concat_arrays(dictionaries)).indices.to_numpy().astype(np.intp)
    groups = np.concatenate(local_codes)
    del local_codes
    groups = to_group[groups]
    return np.concatenate(returns), groups, np.concatenate(solved)


def broken_trajectories(store: TrajectoryStore) -> np.ndarray:
    """Per trajectory, in store order: did the environment break its contract (its weight is then 0)? A store of
    schema version 1 predates the flag: none."""
    if store.schema_version < 2:
        return np.zeros(sum(store.shard_sizes()), dtype=bool)
    flags = [pc.fill_null(pc.greater(pc.utf8_length(table.column("environment_failure").combine_chunks()), 0), False)
             .to_numpy(zero_copy_only=False) for table in store.iter_columns(["environment_failure"])]
    return np.concatenate(flags) if flags else np.zeros(0, dtype=bool)

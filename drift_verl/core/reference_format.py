"""Trajectories made elsewhere, in the paper reference implementation's row format: ``prompt_id``,
``turn_rewards`` (``{"t1": r1, "t2": r2, ...}``, or a list in turn order as parquet files hold it),
``answer_norms`` (the normalised answer of each turn, null when it had none), ``format_penalty`` and, for
training, ``messages`` (the conversation as chat messages).

Rows come from JSONL, parquet or a ``datasets`` folder (``save_to_disk``), each named by where it is
(``FILE:LINE`` or ``FILE: row K``) so an error points at it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from drift_verl.core.weights import WeightInputError

REFERENCE_FIELDS = ("prompt_id", "turn_rewards", "answer_norms", "format_penalty")
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class ReferenceRow:
    prompt_id: str
    turn_rewards: list[float]
    format_penalty: float
    answers: list[str | None]  # per turn, None where the turn had no parseable answer

    @property
    def given_answers(self) -> list[str]:
        return [a for a in self.answers if a is not None]


def _finite(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WeightInputError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _turn_rewards(turns, where: str) -> list[float]:
    if isinstance(turns, (list, tuple)) and turns:
        return [_finite(r, f"{where}: field 'turn_rewards[{i}]'") for i, r in enumerate(turns)]
    if isinstance(turns, dict):  # a parquet/datasets struct column has every row's keys, null where not played
        turns = {key: value for key, value in turns.items() if value is not None}
    if not isinstance(turns, dict) or not turns:
        raise WeightInputError(f"{where}: field 'turn_rewards' must be a non-empty object like {{\"t1\": 0}} "
                               f"(or a list in turn order), got {turns!r}")
    try:
        order = sorted(turns, key=lambda key: int(str(key).lstrip("t")))
    except ValueError:
        raise WeightInputError(f"{where}: field 'turn_rewards' keys must be t1, t2, ..., got {list(turns)}") from None
    return [_finite(turns[key], f"{where}: field 'turn_rewards.{key}'") for key in order]


def parse_reference_row(row: dict, where: str) -> ReferenceRow:
    """Validate the weight fields of one row (``where`` names it in errors)."""
    if not isinstance(row, dict):
        raise WeightInputError(f"{where}: expected an object with fields {', '.join(REFERENCE_FIELDS)}")
    for field in REFERENCE_FIELDS:
        if field not in row:
            raise WeightInputError(f"{where}: missing field {field!r} (expected {', '.join(REFERENCE_FIELDS)})")
    prompt_id = row["prompt_id"]
    if prompt_id is None or str(prompt_id).strip() == "":
        raise WeightInputError(f"{where}: field 'prompt_id' is empty")
    rewards = _turn_rewards(row["turn_rewards"], where)
    penalty = _finite(row["format_penalty"], f"{where}: field 'format_penalty'")
    answers = row["answer_norms"]
    if not isinstance(answers, (list, tuple)):
        raise WeightInputError(f"{where}: field 'answer_norms' must be a list, got {type(answers).__name__}")
    return ReferenceRow(str(prompt_id), rewards, penalty, [None if a is None else str(a) for a in answers])


def parse_messages(row: dict, where: str) -> list[dict]:
    """The ``messages`` field: a list (or its JSON text) of ``{"role", "content"}`` with text content."""
    messages = row.get("messages")
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as error:
            raise WeightInputError(f"{where}: field 'messages' is text but not JSON ({error.msg})") from None
    if not isinstance(messages, (list, tuple)) or not messages:
        raise WeightInputError(f"{where}: field 'messages' must be a non-empty list of chat messages, got "
                               f"{type(messages).__name__}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise WeightInputError(f"{where}: field 'messages[{i}]' must be {{\"role\": one of {', '.join(ROLES)}, "
                                   f"\"content\": text}}, got {message!r:.200}")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict | WeightInputError]]:
    with open(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as error:
                yield where, WeightInputError(f"{where}: not valid JSON ({error.msg})")


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    index = 0
    with pq.ParquetFile(path) as source:
        for batch in source.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield f"{path}: row {index}", row
                index += 1


def _dataset_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import datasets

    dataset = datasets.load_from_disk(str(path))
    if isinstance(dataset, datasets.DatasetDict):
        if list(dataset) != ["train"]:
            raise WeightInputError(f"{path}: a dataset with splits {list(dataset)}; save the one split to import")
        dataset = dataset["train"]
    for index, row in enumerate(dataset):
        yield f"{path}: row {index}", row


def read_rows(path: str | Path) -> Iterator[tuple[str, dict | WeightInputError]]:
    """``(where, row)`` for each row of a JSONL file, a parquet file or a ``datasets`` folder, streamed; a line
    that is not JSON comes as ``(where, WeightInputError)`` so a caller can skip it or stop."""
    path = Path(path)
    if path.is_dir():
        return _dataset_rows(path)
    if not path.is_file():
        raise WeightInputError(f"{path}: no such file or dataset folder")
    return _parquet_rows(path) if path.suffix == ".parquet" else _jsonl_rows(path)

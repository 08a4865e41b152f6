"""Converters from GSM8K, MATH500 and MetaMathQA to verl's RL parquet schema, in the paper's prompt format.

``python -m drift_verl.data_prep {gsm8k,math500,metamathqa} --input PATH_OR_HUB_NAME --output OUT.parquet``
(``scripts/data/prepare.py`` is the same command). The input is a local ``.jsonl``/``.json``/``.parquet`` file,
or, when no such file exists, a dataset name on the Hugging Face hub (needs a network). Each output row has a
chat ``prompt`` (:data:`INSTRUCTION` as the system message, the question as the user message),
``data_source``, ``reward_model.ground_truth`` and ``extra_info`` (``prompt_id``, ``index``, ``split`` and the
source's solution). Rows with a missing question/answer or an unreadable gold answer are reported by id on
stderr and skipped, with a count; the command fails only when no row survives.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from drift_verl.core.answers import extract_boxed
from drift_verl.core.safe_io import atomic_path, refuse_overwriting

INSTRUCTION = "Solve the problem step by step. Put the final answer in <answer></answer> tags."
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


class BadRow(ValueError):
    """A source row that cannot become a training prompt; the message says which field and why."""


def _text(row: dict, key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"missing or empty {key!r}")
    return value.strip()


_GSM8K_GOLD = re.compile(r"[-+]?\d+(?:\.\d+)?")


def gsm8k(row: dict) -> tuple[str, str, dict]:
    """Gold: the number after ``####`` in ``answer``, commas removed."""
    question, answer = _text(row, "question"), _text(row, "answer")
    _, marker, tail = answer.rpartition("####")
    gold = tail.strip().replace(",", "")
    if not marker:
        raise BadRow("no '#### <number>' in 'answer'")
    if not _GSM8K_GOLD.fullmatch(gold):
        raise BadRow(f"gold after '####' is not a number: {tail.strip()!r}")
    return question, gold, {"solution": answer}


def math500(row: dict) -> tuple[str, str, dict]:
    """Gold: ``answer``, or the last ``\\boxed{}`` of ``solution`` when there is no ``answer`` field."""
    question = _text(row, "problem")
    answer = row.get("answer")
    gold = (answer.strip() if isinstance(answer, str) else "") or extract_boxed(str(row.get("solution") or ""))
    if not gold:
        raise BadRow("no 'answer' and no \\boxed{} in 'solution'")
    extra = {key: row.get(key) for key in ("solution", "unique_id", "subject", "level")}
    return question, gold, extra


_METAMATH_GOLD = re.compile(r"The answer is:?[ \t]*(\S[^\n]*?)\s*$")


def metamathqa(row: dict) -> tuple[str, str, dict] | None:
    """Only the ``MATH_*`` types (the paper's subset; None for the others). Gold: the final ``The answer is: X``."""
    kind = str(row.get("type") or "")
    if not kind.startswith("MATH_"):
        return None
    question, response = _text(row, "query"), _text(row, "response")
    found = _METAMATH_GOLD.search(response)
    if not found:
        raise BadRow("'response' does not end with 'The answer is: <answer>'")
    return question, found.group(1), {"type": kind, "solution": response}


@dataclass(frozen=True)
class Source:
    """One dataset: its row converter (raises :class:`BadRow`; None: outside the subset) and its hub location."""

    convert: Callable[[dict], tuple[str, str, dict] | None]
    hub_name: str
    hub_config: str | None
    split: str  # the split read from the hub, and recorded in extra_info, unless --split says otherwise


SOURCES = {
    "gsm8k": Source(gsm8k, "openai/gsm8k", "main", "train"),
    "math500": Source(math500, "HuggingFaceH4/MATH-500", None, "test"),
    "metamathqa": Source(metamathqa, "meta-math/MetaMathQA", None, "train"),
}


def read_rows(source: str, split: str, hub_config: str | None = None) -> Iterator[dict | BadRow]:
    """The rows of a local file, or of a hub dataset when ``source`` is no local path. An unreadable JSONL line
    comes out as a :class:`BadRow`, so it is reported with the row's id like any other bad row."""
    path = Path(source)
    if path.is_file():
        if path.suffix == ".jsonl":
            with path.open() as lines:
                for number, line in enumerate(lines, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        yield BadRow(f"line {number} is not JSON ({error.msg})")
        elif path.suffix == ".json":
            rows = json.loads(path.read_text())
            if not isinstance(rows, list):
                raise ValueError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
            yield from rows
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()
        else:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r}; use one of {LOCAL_SUFFIXES}")
    elif path.suffix in LOCAL_SUFFIXES or source.startswith(("/", ".", "~")) or source.count("/") > 1:
        raise FileNotFoundError(f"{source}: no such file (a hub dataset name looks like 'owner/name')")
    else:
        from datasets import load_dataset

        yield from load_dataset(source, hub_config, split=split)


def split_from_file_name(source: str) -> str | None:
    """``train``/``test`` when a local file's name says so (``gsm8k_test.jsonl``), else None."""
    words = set(re.split(r"[^a-z]+", Path(source).stem.lower())) if Path(source).is_file() else set()
    found = words & {"train", "test"}
    return found.pop() if len(found) == 1 else None


@dataclass
class Report:
    written: int = 0
    bad: list[tuple[str, str]] = field(default_factory=list)  # (prompt_id, reason)
    outside_subset: int = 0


def convert(name: str, rows, split: str, report: Report) -> Iterator[dict]:
    """verl rows from source rows; bad rows go to ``report`` instead."""
    to_parts = SOURCES[name].convert
    for index, row in enumerate(rows):
        prompt_id = f"{name}-{split}-{index}"
        try:
            if isinstance(row, BadRow):
                raise row
            if not isinstance(row, dict):
                raise BadRow(f"not an object but {type(row).__name__}")
            parts = to_parts(row)
        except BadRow as error:
            report.bad.append((prompt_id, str(error)))
            continue
        if parts is None:
            report.outside_subset += 1
            continue
        question, gold, extra = parts
        yield {
            "data_source": name,
            "prompt": [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": question}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": gold},
            "extra_info": {"prompt_id": prompt_id, "index": index, "split": split, **extra},
        }


def prepare(name: str, source: str, output: str, split: str | None = None, hub_config: str | None = None) -> Report:
    """Convert ``source`` into ``output`` (written atomically; not written when no row survives)."""
    import pandas as pd

    refuse_overwriting(output, [source])
    spec = SOURCES[name]
    split = split or split_from_file_name(source) or spec.split
    if hub_config is None and source == spec.hub_name:
        hub_config = spec.hub_config
    report = Report()
    rows = list(convert(name, read_rows(source, split, hub_config), split, report))
    for prompt_id, reason in report.bad:
        print(f"{source}: skipped {prompt_id}: {reason}", file=sys.stderr)
    report.written = len(rows)
    if rows:
        with atomic_path(output) as tmp:
            pd.DataFrame(rows).to_parquet(tmp, index=False)
    subset = f"; {report.outside_subset} rows outside the subset" if report.outside_subset else ""
    summary = f"{name}: wrote {report.written} rows to {output}; skipped {len(report.bad)} bad rows{subset}"
    print(summary, file=sys.stderr)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(SOURCES))
    parser.add_argument("--input", required=True, help="local .jsonl/.json/.parquet file, or a hub dataset name")
    parser.add_argument("--output", required=True, help="the parquet file to write")
    parser.add_argument(
        "--split", help="split for prompt ids and extra_info, and the hub split to read (default: from the file "
        "name when it says train or test, else the dataset's own: gsm8k train, math500 test, metamathqa train)"
    )
    parser.add_argument("--hub-config", help="hub dataset config (default: 'main' for openai/gsm8k)")
    args = parser.parse_args(argv)
    try:
        report = prepare(args.dataset, args.input, args.output, args.split, args.hub_config)
    except (OSError, ValueError) as error:
        print(f"{args.dataset}: {error}", file=sys.stderr)
        return 2
    if not report.written:
        print(f"{args.dataset}: no usable rows in {args.input}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

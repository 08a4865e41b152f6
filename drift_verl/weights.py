"""Reweight trajectories made elsewhere (the paper reference implementation's JSONL rows: ``prompt_id``,
``turn_rewards`` as ``{"t1": r1, ...}``, ``answer_norms``, ``format_penalty``)::

    python -m drift_verl.weights IN.jsonl OUT.jsonl --gamma 0.9 --beta 0.1

writes each row back with ``return`` and ``weight`` fields, streaming (two passes, O(rows) floats in memory).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable

import numpy as np

from drift_verl.core.diagnostics import diagnostics
from drift_verl.core.safe_io import OutputOverInput, atomic_path, refuse_overwriting
from drift_verl.core.weights import (
    REPETITION_COEF,
    WeightConfig,
    WeightInputError,
    group_codes,
    group_weights,
    trajectory_return,
)

REFERENCE_FIELDS = ("prompt_id", "turn_rewards", "answer_norms", "format_penalty")


def _finite(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise WeightInputError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def parse_reference_row(row: dict, where: str) -> tuple[str, list[float], float, list[str]]:
    """Validate one reference-format row -> (prompt_id, turn rewards in turn order, format penalty, answers)."""
    for field in REFERENCE_FIELDS:
        if field not in row:
            raise WeightInputError(f"{where}: missing field {field!r} (expected {', '.join(REFERENCE_FIELDS)})")
    prompt_id = row["prompt_id"]
    if prompt_id is None or str(prompt_id).strip() == "":
        raise WeightInputError(f"{where}: field 'prompt_id' is empty")
    turns = row["turn_rewards"]
    if not isinstance(turns, dict) or not turns:
        raise WeightInputError(f"{where}: field 'turn_rewards' must be a non-empty object like {{\"t1\": 0}}")
    try:
        order = sorted(turns, key=lambda key: int(str(key).lstrip("t")))
    except ValueError:
        raise WeightInputError(f"{where}: field 'turn_rewards' keys must be t1, t2, ..., got {list(turns)}") from None
    rewards = [_finite(turns[key], f"{where}: field 'turn_rewards.{key}'") for key in order]
    penalty = _finite(row["format_penalty"], f"{where}: field 'format_penalty'")
    answers = row["answer_norms"]
    if not isinstance(answers, list):
        raise WeightInputError(f"{where}: field 'answer_norms' must be a list, got {type(answers).__name__}")
    return str(prompt_id), rewards, penalty, [str(a) for a in answers if a is not None]


def _read_jsonl(path: str) -> Iterable[tuple[int, dict]]:
    with open(path) as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as error:
                raise WeightInputError(f"{path}:{line_no}: not valid JSON ({error.msg})") from None


def weigh_jsonl(in_path: str, out_path: str, config: WeightConfig) -> dict:
    """Two streaming passes: returns and group ids, then the rows again with ``return`` and ``weight`` (into a
    temporary file renamed onto ``out_path`` when complete; ``out_path`` may not be ``in_path``)."""
    refuse_overwriting(out_path, [in_path])
    returns, prompt_ids, solved = [], [], []
    for line_no, row in _read_jsonl(in_path):
        prompt_id, rewards, penalty, answers = parse_reference_row(row, f"{in_path}:{line_no}")
        returns.append(trajectory_return(rewards, penalty, answers, config.gamma, config.repetition_coef))
        prompt_ids.append(prompt_id)
        solved.append(max(rewards) > 0)
    if not returns:
        raise WeightInputError(f"{in_path}: no rows")
    groups = group_codes(prompt_ids)
    weights = group_weights(np.array(returns), groups, config)
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        for index, (_, row) in enumerate(_read_jsonl(in_path)):
            row["return"] = returns[index]
            row["weight"] = float(weights[index])
            out.write(json.dumps(row) + "\n")
    return diagnostics(weights, groups, np.array(solved))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drift_verl.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="reference-format JSONL of trajectories")
    parser.add_argument("output", help="where to write the rows with 'return' and 'weight'")
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--repetition-coef", type=float, default=REPETITION_COEF)
    parser.add_argument("--normalization", choices=("group", "batch"), default="group")
    parser.add_argument("--cap", type=float, default=None)
    args = parser.parse_args(argv)
    try:
        config = WeightConfig(args.gamma, args.beta, args.repetition_coef, args.normalization, args.cap)
        stats = weigh_jsonl(args.input, args.output, config)
    except (WeightInputError, OutputOverInput, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stats.pop("weights/histogram")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

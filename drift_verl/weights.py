"""Reweight trajectories made elsewhere (the paper reference implementation's JSONL rows: ``prompt_id``,
``turn_rewards`` as ``{"t1": r1, ...}``, ``answer_norms``, ``format_penalty``)::

    python -m drift_verl.weights IN.jsonl OUT.jsonl --gamma 0.9 --beta 0.1

writes each row back with ``return`` and ``weight`` fields, streaming (two passes, O(rows) floats in memory).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from drift_verl.core.diagnostics import diagnostics
from drift_verl.core.reference_format import parse_reference_row, read_rows
from drift_verl.core.safe_io import OutputOverInput, atomic_path, refuse_overwriting
from drift_verl.core.weights import (
    NORMALIZATION_ALIASES,
    NORMALIZATIONS,
    REPETITION_COEF,
    WeightConfig,
    WeightInputError,
    group_codes,
    group_weights,
    trajectory_return,
)


def _rows(path: str):
    """The rows, stopping at the first that is not JSON: weights are only meaningful for the whole file."""
    for where, row in read_rows(path):
        if isinstance(row, WeightInputError):
            raise row
        yield where, row


def weigh_jsonl(in_path: str, out_path: str, config: WeightConfig) -> dict:
    """Two streaming passes: returns and group ids, then the rows again with ``return`` and ``weight`` (into a
    temporary file renamed onto ``out_path`` when complete; ``out_path`` may not be ``in_path``)."""
    refuse_overwriting(out_path, [in_path])
    returns, prompt_ids, solved = [], [], []
    for where, row in _rows(in_path):
        parsed = parse_reference_row(row, where)
        returns.append(trajectory_return(parsed.turn_rewards, parsed.format_penalty, parsed.given_answers,
                                         config.gamma, config.repetition_coef))
        prompt_ids.append(parsed.prompt_id)
        solved.append(max(parsed.turn_rewards) > 0)
    if not returns:
        raise WeightInputError(f"{in_path}: no rows")
    groups = group_codes(prompt_ids)
    weights = group_weights(np.array(returns), groups, config)
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        for index, (_, row) in enumerate(_rows(in_path)):
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
    parser.add_argument("--normalization", choices=(*NORMALIZATIONS, *NORMALIZATION_ALIASES), default="group",
                        help="per prompt group, or one normaliser over the whole store (batch: old name of store)")
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

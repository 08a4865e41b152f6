"""Reweight trajectories made elsewhere (the paper reference implementation's JSONL rows: ``prompt_id``,
``turn_rewards`` as ``{"t1": r1, ...}``, ``answer_norms``, ``format_penalty``)::

    python -m drift_verl.weights IN.jsonl OUT.jsonl [--gamma G] [--beta B] [--repetition-coef L] [--cap C]
        [--partial-credit K]

writes each row back with ``return`` and ``weight`` fields, streaming (two passes, O(rows) numbers in memory).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from drift_verl.core.config import NORMALIZATION_ALIASES, NORMALIZATIONS, ConfigError, WeightConfig
from drift_verl.core.reference_format import parse_reference_row, read_rows
from drift_verl.core.safe_io import OutputOverInput, atomic_path, refuse_overwriting
from drift_verl.core.weights import (WeightInputError, diagnostics, encode_answers, group_codes, group_weights,
                                     trajectory_returns)


# the weight options of both CLIs (this one and ``python -m drift_verl.store inspect``)
WEIGHT_FLAGS = {"gamma": "--gamma", "beta": "--beta", "repetition_coef": "--repetition-coef",
                "normalization": "--normalization", "weight_cap": "--cap", "partial_credit": "--partial-credit"}


def add_weight_arguments(parser: argparse.ArgumentParser, beta_sweep: bool = False) -> None:
    """The weight options both CLIs take, with :class:`WeightConfig`'s defaults; ``beta_sweep``: ``--beta`` takes
    one or more values."""
    parser.add_argument("--gamma", type=float, default=WeightConfig.gamma, help="drift.gamma")
    if beta_sweep:
        parser.add_argument("--beta", type=float, nargs="+", default=[WeightConfig.beta],
                            help="drift.beta: one or more (a sweep)")
    else:
        parser.add_argument("--beta", type=float, default=WeightConfig.beta, help="drift.beta")
    parser.add_argument("--repetition-coef", type=float, default=WeightConfig.repetition_coef,
                        help="drift.repetition_coef")
    parser.add_argument("--normalization", choices=(*NORMALIZATIONS, *NORMALIZATION_ALIASES),
                        default=WeightConfig.normalization,
                        help="per prompt group, or one normaliser over the whole store (batch: old name of store)")
    parser.add_argument("--cap", type=float, default=WeightConfig.cap, help="drift.weight_cap")
    parser.add_argument("--partial-credit", type=float, default=WeightConfig.partial_credit,
                        help="drift.partial_credit: an unsolved trajectory's best near-miss r adds this x r, once")


def weight_configs(args: argparse.Namespace) -> list[WeightConfig]:
    """One :class:`WeightConfig` per ``--beta`` given; a bad value is a :class:`ConfigError` naming its option."""
    betas = args.beta if isinstance(args.beta, list) else [args.beta]
    try:
        return [WeightConfig(gamma=args.gamma, beta=beta, repetition_coef=args.repetition_coef,
                             normalization=args.normalization, cap=args.cap, partial_credit=args.partial_credit)
                for beta in betas]
    except ConfigError as error:
        raise ConfigError(f"{WEIGHT_FLAGS[error.key]}: {error}", error.key) from None


def _rows(path: str):
    """The rows, stopping at the first that is not JSON: weights are only meaningful for the whole file."""
    for where, row in read_rows(path):
        if isinstance(row, WeightInputError):
            raise row
        yield where, row


def weigh_jsonl(in_path: str, out_path: str, config: WeightConfig) -> dict:
    """Two streaming passes: the rows' rewards, answers and group ids, then the rows again with ``return`` and
    ``weight`` (into a temporary file renamed onto ``out_path`` when complete; ``out_path`` may not be ``in_path``).
    The returns are computed at once, as phase 2 computes a store's."""
    refuse_overwriting(out_path, [in_path])
    rewards, reward_lengths, penalties, codes, answer_lengths, prompt_ids, solved = [], [], [], [], [], [], []
    for where, row in _rows(in_path):
        parsed = parse_reference_row(row, where)
        rewards += parsed.turn_rewards
        reward_lengths.append(len(parsed.turn_rewards))
        penalties.append(parsed.format_penalty)
        codes += encode_answers(parsed.answers)
        answer_lengths.append(len(parsed.answers))
        prompt_ids.append(parsed.prompt_id)
        solved.append(max(parsed.turn_rewards) >= 1)  # solved: a turn the verifier scored 1 (or more)
    if not prompt_ids:
        raise WeightInputError(f"{in_path}: no rows")
    returns = trajectory_returns(np.array(rewards), reward_lengths, penalties, np.array(codes, dtype=np.int64),
                                 answer_lengths, config.gamma, config.repetition_coef, config.partial_credit)
    groups = group_codes(prompt_ids)
    weights = group_weights(returns, groups, config)
    with atomic_path(out_path) as tmp, open(tmp, "w") as out:
        for index, (_, row) in enumerate(_rows(in_path)):
            row["return"] = float(returns[index])
            row["weight"] = float(weights[index])
            out.write(json.dumps(row) + "\n")
    return diagnostics(weights, groups, np.array(solved))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drift_verl.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="reference-format JSONL of trajectories")
    parser.add_argument("output", help="where to write the rows with 'return' and 'weight'")
    add_weight_arguments(parser)
    args = parser.parse_args(argv)
    try:
        (config,) = weight_configs(args)
        stats = weigh_jsonl(args.input, args.output, config)
    except (ConfigError, WeightInputError, OutputOverInput, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stats.pop("weights/histogram")
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

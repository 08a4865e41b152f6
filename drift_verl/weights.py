"""DRIFT's returns and importance weights: pure functions, no verl import.

A trajectory's return is ``R = sum_t gamma^(t-1) r_t + format_penalty - lambda * (1 - distinct/answers)``.
Within each group (the N trajectories of one prompt), ``w_i = exp(R_i/beta) / mean_j exp(R_j/beta)``: the
KL-regularised RL optimum written as importance weights on the reference policy's samples (AWR/AWAC), so
weights average 1 per group and weighted SFT on them moves the policy towards that optimum.

CLI (the paper reference implementation's JSONL rows: ``prompt_id``, ``turn_rewards`` as ``{"t1": r1, ...}``,
``answer_norms``, ``format_penalty``)::

    python -m drift_verl.weights IN.jsonl OUT.jsonl --gamma 0.9 --beta 0.1

writes each row back with ``return`` and ``weight`` fields, streaming (two passes, O(rows) floats in memory).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from drift_verl.safe_io import OutputOverInput, atomic_path, refuse_overwriting

FORMAT_PENALTY = -0.1  # added per turn with no parseable answer
REPETITION_COEF = 0.5  # lambda
WEIGHTINGS = ("drift", "uniform", "rejection")


class WeightInputError(ValueError):
    """Bad input to the weight pass; the message names the row and field."""


@dataclass(frozen=True)
class WeightConfig:
    gamma: float = 0.9
    beta: float = 0.1
    repetition_coef: float = REPETITION_COEF
    normalization: str = "group"  # "group" (paper) or "batch"
    cap: float | None = None  # clip weights at this value (after normalisation; not renormalised)
    weighting: str = "drift"  # drift: exp(R/beta); baselines: uniform (offline SFT), rejection (successes only)

    def __post_init__(self):
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta > 0):
            raise WeightInputError(f"beta must be a finite number > 0, got {self.beta!r}")
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1):
            raise WeightInputError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.normalization not in ("group", "batch"):
            raise WeightInputError(f"normalization must be 'group' or 'batch', got {self.normalization!r}")
        if self.cap is not None and not self.cap > 0:
            raise WeightInputError(f"cap must be > 0 or None, got {self.cap!r}")
        if self.weighting not in WEIGHTINGS:
            raise WeightInputError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if self.repetition_coef < 0:
            raise WeightInputError(f"repetition_coef must be >= 0, got {self.repetition_coef!r}")


def repetition_penalty(answers: Sequence[str], coef: float = REPETITION_COEF) -> float:
    """``coef * (1 - distinct / answers)`` over the answers given: repeating a rejected answer costs."""
    if not answers:
        return 0.0
    return coef * (1.0 - len(set(answers)) / len(answers))


def discounted_reward(turn_rewards: Sequence[float], gamma: float) -> float:
    """``sum_t gamma^(t-1) r_t``: solving at an earlier turn is worth more."""
    return float(sum(r * gamma**t for t, r in enumerate(turn_rewards)))


def trajectory_return(
    turn_rewards: Sequence[float],
    format_penalty: float,
    answers: Sequence[str],
    gamma: float = 0.9,
    repetition_coef: float = REPETITION_COEF,
) -> float:
    """R of one trajectory. ``format_penalty`` is the trajectory's total (``FORMAT_PENALTY`` per unparsed turn);
    ``answers`` are the normalised answers of the turns that had one."""
    return discounted_reward(turn_rewards, gamma) + format_penalty - repetition_penalty(answers, repetition_coef)


# ---------------------------------------------------------------- the same, vectorised over many trajectories
# Rows are given as flat values plus one length per row (an Arrow list column's layout). These must equal the
# per-row functions above (tests/test_weights.py checks them against each other on random data).


def _row_index(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For flat values laid out by ``lengths``: each value's row and its position within the row."""
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.repeat(np.arange(lengths.size), lengths)
    starts = np.cumsum(lengths) - lengths
    return rows, np.arange(rows.size) - starts[rows]


def discounted_rewards(rewards: np.ndarray, lengths: np.ndarray, gamma: float) -> np.ndarray:
    """:func:`discounted_reward` of every row: ``rewards`` flat, row ``i`` holding ``lengths[i]`` turns."""
    rows, turn = _row_index(lengths)
    powers = np.array([gamma**t for t in range(int(turn.max(initial=-1)) + 1)], dtype=np.float64)
    terms = np.asarray(rewards, dtype=np.float64) * powers[turn]
    return np.bincount(rows, weights=terms, minlength=len(lengths))


def repetition_penalties(codes: np.ndarray, lengths: np.ndarray, coef: float = REPETITION_COEF) -> np.ndarray:
    """:func:`repetition_penalty` of every row. ``codes`` are the answers as integers (equal answers, equal
    codes), flat, row ``i`` holding ``lengths[i]`` of them; a negative code is a turn with no answer (skipped)."""
    codes = np.asarray(codes, dtype=np.int64)
    rows, _ = _row_index(lengths)
    given = codes >= 0
    rows, codes = rows[given], codes[given]
    num_rows = len(lengths)
    answered = np.bincount(rows, minlength=num_rows)
    span = int(codes.max(initial=0)) + 1
    pairs = np.sort(rows * span + codes)  # (row, answer) pairs, equal ones adjacent
    first = np.ones(pairs.size, dtype=bool)
    np.not_equal(pairs[1:], pairs[:-1], out=first[1:])
    distinct = np.bincount(pairs[first] // span, minlength=num_rows)
    penalty = np.zeros(num_rows)
    some = answered > 0
    penalty[some] = coef * (1.0 - distinct[some] / answered[some])
    return penalty


def trajectory_returns(
    rewards: np.ndarray,
    reward_lengths: np.ndarray,
    format_penalty: np.ndarray,
    answer_codes: np.ndarray,
    answer_lengths: np.ndarray,
    gamma: float = 0.9,
    repetition_coef: float = REPETITION_COEF,
) -> np.ndarray:
    """:func:`trajectory_return` of every row (float64), from flat rewards and answer codes (see above)."""
    return (
        discounted_rewards(rewards, reward_lengths, gamma)
        + np.asarray(format_penalty, dtype=np.float64)
        - repetition_penalties(answer_codes, answer_lengths, repetition_coef)
    )


def group_weights(returns: np.ndarray, groups: np.ndarray, config: WeightConfig) -> np.ndarray:
    """``exp(R/beta)`` normalised to mean 1 per group (or over the batch), computed with a max shift.

    ``groups`` holds integer group codes (see :func:`group_codes`).
    """
    returns = np.asarray(returns, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.intp)
    if config.normalization == "batch":
        groups = np.zeros_like(groups)
    num_groups = int(groups.max()) + 1 if groups.size else 0
    group_max = np.full(num_groups, -np.inf)
    np.maximum.at(group_max, groups, returns)
    weights = returns - group_max[groups]  # each group's best trajectory -> exp(0) = 1
    weights /= config.beta
    np.exp(weights, out=weights)
    counts = np.bincount(groups, minlength=num_groups)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty groups only
        weights *= (counts / np.bincount(groups, weights=weights, minlength=num_groups))[groups]
    if config.cap is not None:
        np.minimum(weights, config.cap, out=weights)
    return weights


def trajectory_weights(returns: np.ndarray, groups: np.ndarray, solved: np.ndarray, config: WeightConfig) -> np.ndarray:
    """The weights phase 3 trains with: DRIFT's, or one of the paper's baselines on the same trajectories —
    ``uniform`` (w = 1: plain offline SFT) or ``rejection`` (successful trajectories only, mean weight 1)."""
    if config.weighting == "uniform":
        return np.ones(len(returns))
    if config.weighting == "rejection":
        kept = np.asarray(solved, dtype=np.float64)
        return kept / kept.mean() if kept.any() else kept
    return group_weights(returns, groups, config)


def group_codes(prompt_ids: Sequence | np.ndarray) -> np.ndarray:
    """Integer code per row for the prompt id (group) it belongs to.

    Integer arrays whose codes are already dense (every code in ``0..max`` used, as
    :func:`drift_verl.store.returns_and_groups` returns them) are returned as they are.
    """
    if isinstance(prompt_ids, np.ndarray) and np.issubdtype(prompt_ids.dtype, np.integer):
        if prompt_ids.size == 0 or (prompt_ids.min() >= 0 and np.bincount(prompt_ids).all()):
            return prompt_ids.astype(np.intp, copy=False)
        return np.unique(prompt_ids, return_inverse=True)[1].astype(np.intp, copy=False)
    _, codes = np.unique(np.asarray(prompt_ids, dtype=object).astype(str), return_inverse=True)
    return codes


def group_ess_fraction(weights: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per non-empty group, ``(sum w)^2 / sum w^2 / n``: 1 for uniform weights, ``1/n`` for one dominant."""
    weights = np.asarray(weights, dtype=np.float64)
    counts = np.bincount(groups)
    present = counts > 0
    sum_w = np.bincount(groups, weights=weights)[present]
    sum_w2 = np.bincount(groups, weights=weights**2)[present]
    return sum_w**2 / np.maximum(sum_w2, 1e-300) / counts[present]


def diagnostics(
    weights: np.ndarray, groups: np.ndarray, solved: np.ndarray | None = None, bins: int = 20
) -> dict[str, float | list]:
    """Health of the weights. ESS fraction per group is ``(sum w)^2 / sum w^2 / n``: 1 when weights are
    uniform, ``1/n`` when a single trajectory carries the group. A group is *degenerate* when its ESS is
    below 1.5 trajectories; an *all-fail* group has no solved trajectory (its weights only rank failures)."""
    weights = np.asarray(weights, dtype=np.float64)
    groups = np.asarray(groups)
    counts = np.bincount(groups)
    present = counts > 0
    ess_fraction = group_ess_fraction(weights, groups)
    ess = ess_fraction * counts[present]
    hist, edges = np.histogram(weights, bins=bins)
    result = {
        "weights/ess_fraction_mean": float(ess_fraction.mean()),
        "weights/ess_fraction_min": float(ess_fraction.min()),
        "weights/degenerate_group_share": float((ess < 1.5).mean()),
        "weights/max": float(weights.max()),
        "weights/mean": float(weights.mean()),
        "weights/num_groups": int(present.sum()),
        "weights/histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
    }
    if solved is not None:
        any_solved = np.bincount(groups, weights=np.asarray(solved, dtype=np.float64))[present] > 0
        result["weights/all_fail_group_share"] = float((~any_solved).mean())
    return result


# ---------------------------------------------------------------- reference-format JSONL
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

"""Returns of many trajectories at once (a whole store): :func:`drift_verl.core.weights.trajectory_return`
vectorised with numpy.

Rows are given as flat values plus one length per row (an Arrow list column's layout), so a store's columns are
used without building per-row Python lists. These must equal the per-row functions (``tests`` check them
against each other on random data).
"""

from __future__ import annotations

import numpy as np

from drift_verl.core.weights import REPETITION_COEF

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

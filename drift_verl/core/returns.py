"""DRIFT's return, written once: ``R = sum_t gamma^(t-1) r_t + format_penalty - lambda * (1 - distinct/answers)``.

:func:`turn_shares` is the formula, vectorised with numpy over many trajectories: each turn's share of the return.
Everything else sums them: :func:`trajectory_returns` (phase 2 over a whole store, and the JSONL CLI) and
:func:`turn_contributions` (one trajectory's shares, which the feedback agent loop places at each turn for
turn-level credit). Solving at an earlier turn is worth more; repeating a rejected answer costs.

Rows are given as flat values plus one length per row (an Arrow list column's layout), so a store's columns are
used without building per-row Python lists. Answers are given as integer codes (equal answers, equal codes, within
a row; a negative code is a turn with no parseable answer): :func:`encode_answers` makes them for one row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FORMAT_PENALTY = -0.1  # added per turn with no parseable answer


def _row_index(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For flat values laid out by ``lengths``: each value's row and its position within the row."""
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.repeat(np.arange(lengths.size), lengths)
    starts = np.cumsum(lengths) - lengths
    return rows, np.arange(rows.size) - starts[rows]


def repetition_penalties(codes: np.ndarray, lengths: np.ndarray, coef: float) -> np.ndarray:
    """``coef * (1 - distinct / answers)`` of every row, over the answers it gave (rows without one: 0).
    ``codes`` flat, row ``i`` holding ``lengths[i]`` of them."""
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


def turn_shares(rewards: np.ndarray, reward_lengths: np.ndarray, answer_codes: np.ndarray,
                answer_lengths: np.ndarray, gamma: float, repetition_coef: float) -> tuple[np.ndarray, np.ndarray]:
    """Each turn's share of its row's return but the format penalty, flat like ``rewards`` (float64):
    ``gamma^(t-1) r_t``, and on the row's last turn minus its repetition penalty (a property of the whole
    trajectory). Row ``i`` holds ``reward_lengths[i]`` rewards and ``answer_lengths[i]`` answer codes.
    Returns ``(row of each turn, shares)``."""
    reward_lengths = np.asarray(reward_lengths, dtype=np.int64)
    rows, turn = _row_index(reward_lengths)
    powers = np.array([gamma**t for t in range(int(turn.max(initial=-1)) + 1)], dtype=np.float64)
    shares = np.asarray(rewards, dtype=np.float64) * powers[turn]
    penalties = repetition_penalties(answer_codes, answer_lengths, repetition_coef)
    last = np.cumsum(reward_lengths) - 1
    played = reward_lengths > 0
    if not played.all():  # rows without a turn (never stored): their penalty would have no turn to fall on
        if penalties[~played].any():
            raise ValueError("a trajectory with answers but no turn reward: its repetition penalty has no turn")
        last, penalties = last[played], penalties[played]
    shares[last] -= penalties
    return rows, shares


def trajectory_returns(rewards: np.ndarray, reward_lengths: np.ndarray, format_penalty: np.ndarray,
                       answer_codes: np.ndarray, answer_lengths: np.ndarray, gamma: float,
                       repetition_coef: float) -> np.ndarray:
    """R of every row (float64): its :func:`turn_shares` summed, plus its ``format_penalty`` (the trajectory's
    total, ``FORMAT_PENALTY`` per unparsed turn)."""
    rows, shares = turn_shares(rewards, reward_lengths, answer_codes, answer_lengths, gamma, repetition_coef)
    return np.bincount(rows, weights=shares, minlength=len(reward_lengths)) + np.asarray(format_penalty, np.float64)


def encode_answers(answers: Sequence[str | None]) -> list[int]:
    """One row's answers as codes: equal answers get equal codes, a turn with no parseable answer (None) -1."""
    codes: dict[str, int] = {}
    return [-1 if a is None else codes.setdefault(a, len(codes)) for a in answers]


def turn_contributions(turn_rewards: Sequence[float], answers: Sequence[str | None], gamma: float,
                       repetition_coef: float) -> list[float]:
    """One trajectory's :func:`turn_shares`, each unparsed turn (answer None) with its ``FORMAT_PENALTY``: they sum
    to its return. Turn-level credit (:mod:`drift_verl.core.turn_credit`) reads them."""
    codes = np.array(encode_answers(answers), dtype=np.int64)
    _, shares = turn_shares(turn_rewards, [len(turn_rewards)], codes, [len(codes)], gamma, repetition_coef)
    return (shares + FORMAT_PENALTY * (codes < 0)).tolist()

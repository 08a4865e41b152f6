"""Phase 2, pure numpy: the return of each trajectory, its importance weight within its group, and how healthy
the weights are. No verl import; the settings are :class:`drift_verl.core.config.WeightConfig`.

**Return**, written once: ``R = sum_t gamma^(t-1) r_t + format_penalty - lambda * (1 - distinct/answers)``
(a graded verifier's near-misses: :func:`turn_shares`).
:func:`turn_shares` is the formula, vectorised over many trajectories: each turn's share of the return. Everything
else sums them: :func:`trajectory_returns` (a whole store, and the JSONL CLI) and :func:`turn_contributions` (one
trajectory's shares, which the feedback agent loop places at each turn for turn-level credit). Solving at an
earlier turn is worth more; repeating a rejected answer costs. Rows are given as flat values plus one length per
row (an Arrow list column's layout), so a store's columns are used without building per-row Python lists;
answers as integer codes (equal answers, equal codes, within a row; negative: no parseable answer).

**Weights**: within each group (the N trajectories of one prompt), ``w_i = exp(R_i/beta) / mean_j exp(R_j/beta)``:
the KL-regularised RL optimum written as importance weights on the reference policy's samples (AWR/AWAC), so
weights average 1 per group and weighted SFT on them moves the policy towards that optimum. How one optimizer
step's weights enter the loss (``drift.loss_normalization``): :func:`step_weights`.

**Health**: effective sample size per group, degenerate and all-fail groups (:func:`diagnostics`).
Reweighting reference-format JSONL: ``python -m drift_verl.weights``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drift_verl.core.config import LOSS_NORMALIZATIONS, WeightConfig

# ------------------------------------------------------------------------------------------------ the return
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
                answer_lengths: np.ndarray, gamma: float, repetition_coef: float,
                partial_credit: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Each turn's share of its row's return but the format penalty, flat like ``rewards`` (float64):
    ``gamma^(t-1) r_t``, and on the row's last turn minus its repetition penalty (a property of the whole
    trajectory). Row ``i`` holds ``reward_lengths[i]`` rewards and ``answer_lengths[i]`` answer codes.

    A graded verifier's partial credit (0 < r_t < 1: wrong, but near) is not summed over turns, where five
    near-misses at 0.8 would outweigh a first-turn success: it counts once, ``partial_credit * max_t r_t`` on the
    turn of the best near-miss, and only in a trajectory never solved (r_t >= 1). With ``partial_credit`` < 1 a
    first-turn success (R = 1) beats every unsolved trajectory, and with ``partial_credit`` < gamma^(T-1) so does a
    success at any turn (penalties aside). Binary rewards give what they always gave.
    Returns ``(row of each turn, shares)``."""
    reward_lengths = np.asarray(reward_lengths, dtype=np.int64)
    rows, turn = _row_index(reward_lengths)
    powers = np.array([gamma**t for t in range(int(turn.max(initial=-1)) + 1)], dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    near = (rewards > 0) & (rewards < 1)
    shares = np.where(near, 0.0, rewards) * powers[turn]
    if partial_credit and near.any():
        solved = np.bincount(rows, weights=rewards >= 1, minlength=reward_lengths.size) > 0
        best = np.zeros(reward_lengths.size)
        np.maximum.at(best, rows[near], rewards[near])
        candidates = np.flatnonzero(near & ~solved[rows] & (rewards == best[rows]))
        _, first = np.unique(rows[candidates], return_index=True)  # the earliest turn with the best near-miss
        shares[candidates[first]] += partial_credit * rewards[candidates[first]]
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
                       repetition_coef: float, partial_credit: float = 0.0) -> np.ndarray:
    """R of every row (float64): its :func:`turn_shares` summed, plus its ``format_penalty`` (the trajectory's
    total, ``FORMAT_PENALTY`` per unparsed turn)."""
    rows, shares = turn_shares(rewards, reward_lengths, answer_codes, answer_lengths, gamma, repetition_coef,
                               partial_credit)
    return np.bincount(rows, weights=shares, minlength=len(reward_lengths)) + np.asarray(format_penalty, np.float64)


def encode_answers(answers: Sequence[str | None]) -> list[int]:
    """One row's answers as codes: equal answers get equal codes, a turn with no parseable answer (None) -1."""
    codes: dict[str, int] = {}
    return [-1 if a is None else codes.setdefault(a, len(codes)) for a in answers]


def turn_contributions(turn_rewards: Sequence[float], answers: Sequence[str | None], gamma: float,
                       repetition_coef: float, partial_credit: float = 0.0) -> list[float]:
    """One trajectory's :func:`turn_shares`, each unparsed turn (answer None) with its ``FORMAT_PENALTY``: they sum
    to its return. Turn-level credit (:mod:`drift_verl.core.turn_credit`) reads them."""
    codes = np.array(encode_answers(answers), dtype=np.int64)
    _, shares = turn_shares(turn_rewards, [len(turn_rewards)], codes, [len(codes)], gamma, repetition_coef,
                            partial_credit)
    return (shares + FORMAT_PENALTY * (codes < 0)).tolist()


# ------------------------------------------------------------------------------------------------ the weights
class WeightInputError(ValueError):
    """Bad input to the weight pass; the message names the row and field."""


def group_weights(returns: np.ndarray, groups: np.ndarray, config: WeightConfig) -> np.ndarray:
    """``exp(R/beta)`` normalised to mean 1 per group (or over the whole store), computed with a max shift.

    ``groups`` holds integer group codes (see :func:`group_codes`).
    """
    returns = np.asarray(returns, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.intp)
    if config.normalization == "store":
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


def trajectory_weights(returns: np.ndarray, groups: np.ndarray, solved: np.ndarray, config: WeightConfig,
                       broken: np.ndarray | None = None) -> np.ndarray:
    """The weights phase 3 trains with: DRIFT's, or one of the paper's baselines on the same trajectories —
    ``uniform`` (w = 1: plain offline SFT) or ``rejection`` (successful trajectories only, mean weight 1).
    ``broken`` trajectories (the environment broke its contract) weigh 0 and are left out of every normaliser."""
    if broken is not None and np.any(broken):
        kept = ~np.asarray(broken, dtype=bool)
        weights = np.zeros(len(returns))
        weights[kept] = trajectory_weights(np.asarray(returns)[kept], np.asarray(groups)[kept],
                                           np.asarray(solved)[kept], config)
        return weights
    if config.weighting == "uniform":
        return np.ones(len(returns))
    if config.weighting == "rejection":
        kept = np.asarray(solved, dtype=np.float64)
        return kept / kept.mean() if kept.any() else kept
    return group_weights(returns, groups, config)


def step_weights(weights: np.ndarray, mode: str = "mean") -> np.ndarray:
    """One optimizer step's weights as the loss gets them (``drift.loss_normalization``).

    The loss aggregates ``(1/B) * sum_i w_i * L_i`` over the step's B trajectories (verl's ``seq-mean-token-mean``
    with the step's size as its global batch size; L_i: token-mean NLL of i's trained tokens).

    - ``mean``: the weights as they are; the loss is ``(1/B) sum w L``.
    - ``weight_sum``: ``w * B / sum(w)``; the loss is then ``sum w L / sum w`` (the paper reference code's
      alternative). The whole step is rescaled here, before it is split, so the result is exact however verl
      splits it into micro-batches (``use_dynamic_bsz``) and data-parallel ranks: each rank's micro-batch loss is
      ``sum_{i in micro-batch} w_i L_i * dp_size / B``, micro-batch gradients add up, and the data-parallel
      all-reduce averages them over ranks. A trajectory without trained tokens has L = 0 but its weight counts in
      ``sum(w)``, as it counts in B under ``mean``.

    A step whose weights are all 0 (``rejection`` weighting with no success among its trajectories) is returned
    as it is, all zeros, in both modes: no division by zero, loss 0 and a zero gradient (verl still takes its
    optimizer step, where momentum and weight decay act, as with ``mean``).
    """
    if mode not in LOSS_NORMALIZATIONS:
        raise WeightInputError(f"loss normalization must be one of {LOSS_NORMALIZATIONS}, got {mode!r}")
    weights = np.asarray(weights, dtype=np.float64)
    if mode == "mean":
        return weights.copy()
    if weights.size and (not np.all(np.isfinite(weights)) or weights.min() < 0):
        raise WeightInputError("step weights must be finite and >= 0")
    total = weights.sum()
    if total == 0:  # all zero (or an empty step): nothing to normalise, nothing is trained
        return weights.copy()
    return weights * (weights.size / total)


def group_codes(prompt_ids: Sequence | np.ndarray) -> np.ndarray:
    """Integer code per row for the prompt id (group) it belongs to.

    Integer arrays whose codes are already dense (every code in ``0..max`` used, as
    :func:`drift_verl.core.store.returns_and_groups` returns them) are returned as they are.
    """
    if isinstance(prompt_ids, np.ndarray) and np.issubdtype(prompt_ids.dtype, np.integer):
        if prompt_ids.size == 0 or (prompt_ids.min() >= 0 and np.bincount(prompt_ids).all()):
            return prompt_ids.astype(np.intp, copy=False)
        return np.unique(prompt_ids, return_inverse=True)[1].astype(np.intp, copy=False)
    _, codes = np.unique(np.asarray(prompt_ids, dtype=object).astype(str), return_inverse=True)
    return codes


# ------------------------------------------------------------------------------------------------ their health
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


def weigh(returns: np.ndarray, groups: np.ndarray, solved: np.ndarray, config: WeightConfig,
          broken: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, float | list]]:
    """Phase 2 on a store's returns (:func:`drift_verl.core.store.returns_and_groups`) and its broken trajectories
    (:func:`drift_verl.core.store.broken_trajectories`): the weights ``config`` gives, and their diagnostics with the
    mean return and the number of broken trajectories, as a run logs them."""
    weights = trajectory_weights(returns, groups, solved, config, broken)
    return weights, {**diagnostics(weights, groups, solved), "weights/return_mean": float(returns.mean()),
                     "weights/broken_trajectories": int(np.sum(broken)) if broken is not None else 0}

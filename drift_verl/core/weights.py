"""DRIFT's returns and importance weights: pure functions, no verl import.

A trajectory's return is ``R = sum_t gamma^(t-1) r_t + format_penalty - lambda * (1 - distinct/answers)``.
Within each group (the N trajectories of one prompt), ``w_i = exp(R_i/beta) / mean_j exp(R_j/beta)``: the
KL-regularised RL optimum written as importance weights on the reference policy's samples (AWR/AWAC), so
weights average 1 per group and weighted SFT on them moves the policy towards that optimum.

How one optimizer step's weights enter the loss (``drift.loss_normalization``): :func:`step_weights`.

The same returns over a whole store at once: :mod:`drift_verl.core.returns`; weight health (ESS):
:mod:`drift_verl.core.diagnostics`; reweighting reference-format JSONL: ``python -m drift_verl.weights``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FORMAT_PENALTY = -0.1  # added per turn with no parseable answer
REPETITION_COEF = 0.5  # lambda
WEIGHTINGS = ("drift", "uniform", "rejection")
NORMALIZATIONS = ("group", "store")  # one normaliser per prompt group, or one over the whole store
NORMALIZATION_ALIASES = {"batch": "store"}  # the old name of ``store`` (it never meant one optimizer step's batch)
LOSS_NORMALIZATIONS = ("mean", "weight_sum")  # see :func:`step_weights`


def normalization_name(value: str) -> str:
    """``value`` with its alias resolved (``batch`` -> ``store``); unknown names are returned as they are."""
    return NORMALIZATION_ALIASES.get(value, value) if isinstance(value, str) else value


class WeightInputError(ValueError):
    """Bad input to the weight pass; the message names the row and field."""


@dataclass(frozen=True)
class WeightConfig:
    gamma: float = 0.9
    beta: float = 0.1
    repetition_coef: float = REPETITION_COEF
    normalization: str = "group"  # "group" (paper) or "store" (one normaliser over the store; alias "batch")
    cap: float | None = None  # clip weights at this value (after normalisation; not renormalised)
    weighting: str = "drift"  # drift: exp(R/beta); baselines: uniform (offline SFT), rejection (successes only)

    def __post_init__(self):
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta > 0):
            raise WeightInputError(f"beta must be a finite number > 0, got {self.beta!r}")
        if not (isinstance(self.gamma, (int, float)) and 0 < self.gamma <= 1):
            raise WeightInputError(f"gamma must be in (0, 1], got {self.gamma!r}")
        object.__setattr__(self, "normalization", normalization_name(self.normalization))
        if self.normalization not in NORMALIZATIONS:
            raise WeightInputError(f"normalization must be 'group' or 'store' (alias 'batch'), "
                                   f"got {self.normalization!r}")
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


def turn_contributions(
    turn_rewards: Sequence[float],
    answers: Sequence[str | None],
    gamma: float = 0.9,
    repetition_coef: float = REPETITION_COEF,
) -> list[float]:
    """Each turn's share of the return (they sum to :func:`trajectory_return`): ``gamma^(t-1) r_t``, plus
    ``FORMAT_PENALTY`` where turn t gave no parseable answer (``None``); the repetition penalty, a property of
    the whole trajectory, falls on its last turn. Turn-level credit (:mod:`drift_verl.core.turn_credit`) reads them."""
    shares = [r * gamma**t + (FORMAT_PENALTY if a is None else 0.0) for t, (r, a) in enumerate(zip(turn_rewards, answers))]
    if shares:
        shares[-1] -= repetition_penalty([a for a in answers if a is not None], repetition_coef)
    return shares


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


def trajectory_weights(returns: np.ndarray, groups: np.ndarray, solved: np.ndarray, config: WeightConfig) -> np.ndarray:
    """The weights phase 3 trains with: DRIFT's, or one of the paper's baselines on the same trajectories —
    ``uniform`` (w = 1: plain offline SFT) or ``rejection`` (successful trajectories only, mean weight 1)."""
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

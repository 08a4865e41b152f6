"""DRIFT's importance weights: pure functions, no verl import.

Within each group (the N trajectories of one prompt), ``w_i = exp(R_i/beta) / mean_j exp(R_j/beta)``: the
KL-regularised RL optimum written as importance weights on the reference policy's samples (AWR/AWAC), so
weights average 1 per group and weighted SFT on them moves the policy towards that optimum.

How one optimizer step's weights enter the loss (``drift.loss_normalization``): :func:`step_weights`.

The returns R: :mod:`drift_verl.core.returns`; the settings (:class:`WeightConfig`): :mod:`drift_verl.core.config`;
weight health (ESS): :mod:`drift_verl.core.diagnostics`; reweighting reference-format JSONL:
``python -m drift_verl.weights``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drift_verl.core.config import LOSS_NORMALIZATIONS, WeightConfig


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

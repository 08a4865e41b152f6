"""How healthy a set of weights is: effective sample size per group, degenerate and all-fail groups."""

from __future__ import annotations

import numpy as np

from drift_verl.core.config import WeightConfig
from drift_verl.core.weights import trajectory_weights


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


def weigh(returns: np.ndarray, groups: np.ndarray, solved: np.ndarray, config: WeightConfig
          ) -> tuple[np.ndarray, dict[str, float | list]]:
    """Phase 2 on a store's returns (:func:`drift_verl.core.store.returns_and_groups`): the weights ``config``
    gives, and their diagnostics with the mean return, as a run logs them."""
    weights = trajectory_weights(returns, groups, solved, config)
    return weights, {**diagnostics(weights, groups, solved), "weights/return_mean": float(returns.mean())}

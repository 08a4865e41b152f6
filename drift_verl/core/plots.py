"""PNG plots people would rather look at than read: weights and ESS per group, accuracy by turn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drift_verl.core.safe_io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png")
    plt.close(figure)
    return path


def weight_plots(weights: np.ndarray, groups: np.ndarray, path: Path) -> Path:
    """Histogram of the weights and of the per-group effective sample size fraction."""
    from drift_verl.core.weights import group_ess_fraction

    plt = _pyplot()
    ess_fraction = group_ess_fraction(weights, groups)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.hist(weights, bins=40, color="tab:blue")
    left.set(title="trajectory weights w = exp(R/beta) / group mean", xlabel="weight", ylabel="trajectories")
    left.set_yscale("log")
    right.hist(ess_fraction, bins=20, range=(0, 1), color="tab:orange")
    right.set(title="effective sample size per group", xlabel="ESS / group size", ylabel="groups")
    return _save(plt, figure, path)


def turn_plot(metrics: dict, max_turns: int, path: Path, label: str = "reference policy") -> Path:
    """Accuracy at each turn and solved-within-k curves from :func:`drift_verl.core.metrics.multi_turn_metrics`."""
    plt = _pyplot()
    turns = np.arange(1, max_turns + 1)
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.bar(turns, [metrics.get(f"acc_at_turn_{k}", 0.0) for k in turns], alpha=0.6, label="solved at turn t")
    axis.plot(turns, [metrics.get(f"solved_within_{k}", 0.0) for k in turns], "o-", color="tab:red",
              label="solved within k turns")
    axis.set(title=f"{label}: accuracy by turn", xlabel="turn", ylabel="share of trajectories", ylim=(0, 1))
    axis.set_xticks(turns)
    axis.legend()
    return _save(plt, figure, path)


def benchmark_turn_plot(results: dict[str, dict], max_turns: int, path: Path, title: str = "accuracy by turn") -> Path:
    """Per benchmark (``{name: multi_turn_metrics}``): solved within k turns (left) and correct at turn t (right)."""
    plt = _pyplot()
    turns = np.arange(1, max_turns + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, metrics in results.items():
        left.plot(turns, [metrics.get(f"solved_within_{k}", 0.0) for k in turns], "o-", label=name)
        right.plot(turns, [metrics.get(f"acc_at_turn_{k}", 0.0) for k in turns], "s--", label=name)
    left.set(title=f"{title}: solved within k turns", xlabel="k", ylabel="share of trajectories", ylim=(0, 1))
    right.set(title="correct at turn t", xlabel="turn t", ylabel="share of trajectories", ylim=(0, 1))
    for axis in (left, right):
        axis.set_xticks(turns)
        axis.legend(fontsize="small")
    return _save(plt, figure, path)

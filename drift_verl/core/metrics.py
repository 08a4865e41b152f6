"""Multi-turn metrics from per-trajectory turn rewards and answers (pure functions, no verl import).

Used for the rollouts of phase 1, validation summaries and evaluation, so every report speaks the same terms:
accuracy at turn t, solved within k turns, correction rate, non-repeat ratio, format failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def answer_counts(answers: Sequence[str | None]) -> tuple[int, int, int, int]:
    """(fresh, repeated, unparsed, turns) of one trajectory: answers after feedback that differ from every
    earlier answer or repeat one, and turns with no parseable answer."""
    fresh = repeats = unparsed = 0
    seen: set[str] = set()
    for t, answer in enumerate(answers):
        if answer is None:
            unparsed += 1
            continue
        if t > 0:
            repeats += answer in seen
            fresh += answer not in seen
        seen.add(answer)
    return fresh, repeats, unparsed, len(answers)


def solved_turn(turn_rewards: Sequence[float]) -> int:
    """t*: the first correct turn (1-based), 0 when never solved."""
    return next((t + 1 for t, r in enumerate(turn_rewards) if r >= 1.0), 0)


def trajectory_info(turn_rewards: Sequence[float], answers: Sequence[str | None], max_turns: int) -> dict[str, float]:
    """Per-trajectory values whose means over a data set give every metric (:func:`metrics_from_means`): the
    feedback loop puts them into ``reward_extra_info``, which verl's validation averages per data source and
    writes per trajectory to its dump. ``reached_turn_k``: turn k was played with no earlier correct answer."""
    solved_at = solved_turn(turn_rewards)
    fresh, repeats, unparsed, turns = answer_counts(answers)
    info = {"acc": float(solved_at > 0)}
    info.update({f"solved_within_{k}": float(0 < solved_at <= k) for k in range(1, max_turns + 1)})
    info.update({f"reached_turn_{k}": float(turns >= k and not 0 < solved_at < k) for k in range(2, max_turns + 1)})
    info.update({"solved_turn": float(solved_at), "assistant_turns": float(turns), "fresh_answers": float(fresh),
                 "retried_answers": float(fresh + repeats), "unparsed_turns": float(unparsed)})
    return info


def multi_turn_metrics(
    turn_rewards: Sequence[Sequence[float]], answers: Sequence[Sequence[str | None]], max_turns: int
) -> dict[str, float]:
    """The metrics of a set of trajectories from their turn rewards and parsed answers (one list per trajectory)."""
    infos = [trajectory_info(rewards, given, max_turns) for rewards, given in zip(turn_rewards, answers)]
    return metrics_from_info(infos, max_turns)


def metrics_from_info(infos: Sequence[Mapping[str, float]], max_turns: int) -> dict[str, float]:
    """The metrics of a set of trajectories from their :func:`trajectory_info` values (e.g. verl's validation
    dump, one row per trajectory; other fields are ignored); empty for no trajectories."""
    if not infos:
        return {}
    keys = [key for key, value in infos[0].items() if isinstance(value, (int, float))]
    return metrics_from_means({key: sum(info[key] for info in infos) / len(infos) for key in keys}, max_turns)


def metrics_from_means(means: Mapping[str, float], max_turns: int) -> dict[str, float]:
    """The metrics from the means of :func:`trajectory_info` values over a set of trajectories (what verl's
    validation logs per data source). A trajectory stops at its first correct answer, so "solved within k" =
    first success at turn <= k.

    - ``solved_within_k`` (multi@k): share of trajectories solved by turn k;
    - ``acc_at_turn_t``: share of all trajectories whose turn t is correct;
    - ``correction_rate_turn_t``: among trajectories that reached turn t unsolved, share solved at turn t;
    - ``mean_turns_to_solve``: mean turn of the first correct answer, over solved trajectories;
    - ``non_repeat_ratio``: share of answers given after feedback that differ from every earlier answer;
    - ``format_failure_rate``: share of turns with no parseable answer; ``mean_turns``: assistant turns.
    """
    metrics: dict[str, float] = {}
    previous = 0.0
    for k in range(1, max_turns + 1):
        within = means[f"solved_within_{k}"]
        metrics[f"solved_within_{k}"] = within
        metrics[f"acc_at_turn_{k}"] = max(within - previous, 0.0)
        reached = means.get(f"reached_turn_{k}", 0.0)
        if k > 1 and reached:
            metrics[f"correction_rate_turn_{k}"] = metrics[f"acc_at_turn_{k}"] / reached
        previous = within
    ratios = {"mean_turns_to_solve": ("solved_turn", "acc", 0.0),
              "non_repeat_ratio": ("fresh_answers", "retried_answers", 1.0),
              "format_failure_rate": ("unparsed_turns", "assistant_turns", 0.0)}
    for name, (numerator, denominator, empty) in ratios.items():
        metrics[name] = means[numerator] / means[denominator] if means[denominator] else empty
    metrics["mean_turns"] = means["assistant_turns"]
    return metrics


def validation_summary(metrics: dict) -> dict[str, dict[str, float]]:
    """Per data source, the metrics of :func:`metrics_from_means` from verl's validation means
    (``val-core|val-aux/<source>/<name>/mean@N``) of the feedback loop's per-trajectory values."""
    means: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0] in ("val-core", "val-aux") and parts[3].startswith("mean@"):
            means.setdefault(parts[1], {})[parts[2]] = float(value)
    summary = {}
    for source, values in means.items():
        turns = [int(name.rsplit("_", 1)[1]) for name in values if name.startswith("solved_within_")]
        if turns and "assistant_turns" in values:  # a source scored by the feedback loop
            summary[source] = metrics_from_means(values, max(turns))
    return summary

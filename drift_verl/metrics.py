"""Multi-turn metrics from per-trajectory turn rewards and answers (pure functions, no verl import).

Used for the rollouts of phase 1, validation summaries and evaluation, so every report speaks the same terms:
accuracy at turn t, solved within k turns, correction rate, non-repeat ratio, format failures.
"""

from __future__ import annotations

from collections.abc import Sequence


def multi_turn_metrics(
    turn_rewards: Sequence[Sequence[float]], answers: Sequence[Sequence[str | None]], max_turns: int
) -> dict[str, float]:
    """A trajectory stops at its first correct answer, so "solved within k" = first success at turn <= k.

    - ``acc_at_turn_t``: share of all trajectories whose turn t is correct;
    - ``correction_rate_turn_t``: among trajectories still unsolved after turn t-1, share solved at turn t;
    - ``non_repeat_ratio``: share of answers given after feedback that differ from every earlier answer;
    - ``format_failure_rate``: share of turns with no parseable answer.
    """
    total = len(turn_rewards)
    if total == 0:
        return {}
    first_solved = [next((t + 1 for t, r in enumerate(rs) if r >= 1.0), 0) for rs in turn_rewards]
    metrics: dict[str, float] = {}
    for k in range(1, max_turns + 1):
        metrics[f"solved_within_{k}"] = sum(1 for s in first_solved if 0 < s <= k) / total
        metrics[f"acc_at_turn_{k}"] = sum(1 for s in first_solved if s == k) / total
        reached = sum(1 for s, rs in zip(first_solved, turn_rewards) if len(rs) >= k and (s == 0 or s >= k))
        if k > 1 and reached:
            metrics[f"correction_rate_turn_{k}"] = sum(1 for s in first_solved if s == k) / reached
    solved = [s for s in first_solved if s > 0]
    metrics["mean_turns_to_solve"] = sum(solved) / len(solved) if solved else 0.0
    fresh = repeats = unparsed = turns = 0
    for given in answers:
        seen: set[str] = set()
        for t, answer in enumerate(given):
            turns += 1
            if answer is None:
                unparsed += 1
                continue
            if t > 0:
                if answer in seen:
                    repeats += 1
                else:
                    fresh += 1
            seen.add(answer)
    metrics["non_repeat_ratio"] = fresh / (fresh + repeats) if fresh + repeats else 1.0
    metrics["format_failure_rate"] = unparsed / turns if turns else 0.0
    metrics["mean_turns"] = turns / total
    return metrics

"""Student's t intervals for differences of means, written out because scipy is not part of the install: the
comparison protocol's differences over seeds, and a run's validation gain over problems."""

from __future__ import annotations

import math
import statistics


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction of the incomplete beta function (Numerical Recipes, betacf)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0 or x >= 1.0:
        return max(0.0, min(1.0, x))
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(a, b, x) / a
    return 1.0 - front * _continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, dof: float) -> float:
    """Student's t distribution function, for any (also fractional: Welch) degrees of freedom."""
    tail = 0.5 * _incomplete_beta(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, dof: float) -> float:
    """Student's t quantile by bisection on :func:`t_cdf` (scipy is not part of the install)."""
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    high = 1.0
    while t_cdf(high, dof) < p:
        high *= 2.0
    low = 0.0
    for _ in range(200):
        middle = (low + high) / 2.0
        low, high = (middle, high) if t_cdf(middle, dof) < p else (low, middle)
    return (low + high) / 2.0


def paired_ci(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, list[float] | None]:
    """Mean of the paired differences a_i - b_i (per seed, or per problem) and its t interval with n - 1 degrees
    of freedom."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, None
    half = t_quantile((1 + level) / 2, len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, [mean - half, mean + half]


def welch_ci(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, list[float] | None]:
    """Difference of means with Welch's interval (unequal variances, Welch-Satterthwaite degrees of freedom)."""
    mean = statistics.fmean(a) - statistics.fmean(b)
    if min(len(a), len(b)) < 2:
        return mean, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return mean, [mean, mean]
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile((1 + level) / 2, dof) * math.sqrt(va + vb)
    return mean, [mean - half, mean + half]


def validation_gain(before: list[dict], after: list[dict], key: str) -> dict[str, dict]:
    """Per data source, the change of ``key`` between two validations of the same problems (verl's validation
    dump: one row per trajectory, with ``data_source``, ``input`` (the problem's prompt) and the feedback loop's
    per-trajectory values): each problem's mean over its samples, paired by problem, with its 95% t interval.
    The pairing removes the spread between easy and hard problems, which dominates an unpaired interval."""

    def by_problem(rows: list[dict]) -> dict[tuple[str, str], float]:
        values: dict[tuple[str, str], list[float]] = {}
        for row in rows:
            if row.get(key) is not None and row.get("input") is not None:  # a row must say its problem
                values.setdefault((str(row.get("data_source")), str(row.get("input"))), []).append(float(row[key]))
        return {problem: statistics.fmean(v) for problem, v in values.items()}

    first, last = by_problem(before), by_problem(after)
    both = first.keys() & last.keys()
    gains: dict[str, dict] = {}
    for source in sorted({source for source, _ in both}):
        problems = sorted(p for p in both if p[0] == source)
        mean, ci = paired_ci([last[p] for p in problems], [first[p] for p in problems])
        gains[source] = {"gain": mean, "ci": ci, "problems": len(problems)}
    return gains

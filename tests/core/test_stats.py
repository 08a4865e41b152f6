"""Student's t intervals (no scipy in the install) against scipy's values, and a run's validation gain paired by
problem."""

import math

import numpy as np
import pytest

from drift_verl.core import stats


@pytest.mark.parametrize("dof, expected", [(1, 12.706204736174694), (2, 4.302652729749462), (4, 2.7764451051977934),
                                           (4.5, 2.6589123472044034), (7.3, 2.345066736547703),
                                           (8, 2.306004135204166), (30, 2.0422724563012378),
                                           (1000, 1.9623390808264083)])
def test_t_quantile_matches_scipy(dof, expected):
    """Values of scipy.stats.t.ppf(0.975, dof) (scipy 1.16), fractional dof included (Welch)."""
    assert stats.t_quantile(0.975, dof) == pytest.approx(expected, rel=1e-10)
    assert stats.t_quantile(0.025, dof) == pytest.approx(-expected, rel=1e-10)


def test_t_distribution_function_matches_closed_forms():
    for t in (-3.0, -0.4, 0.0, 0.7, 5.0):
        assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)  # Cauchy
        assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


def test_confidence_intervals_match_scipy():
    """scipy.stats.ttest_rel / ttest_ind(equal_var=False) ... .confidence_interval(0.95) on the same numbers."""
    mean, ci = stats.paired_ci([0.66, 0.70, 0.61, 0.68, 0.64], [0.65, 0.66, 0.62, 0.64, 0.66])
    assert mean == pytest.approx(0.012) and ci == pytest.approx([-0.022454777651513373, 0.04645477765151335])
    mean, ci = stats.welch_ci([0.70, 0.72, 0.68, 0.71, 0.69], [0.60, 0.66, 0.63, 0.58, 0.65])
    assert mean == pytest.approx(0.076) and ci == pytest.approx([0.03480090165988517, 0.11719909834011474])
    # equal variances and n: Welch's dof is 2(n - 1) = 8
    a = [0.70, 0.72, 0.68, 0.71, 0.69]
    mean, ci = stats.welch_ci(a, [x - 0.05 for x in reversed(a)])
    assert ci[1] - mean == pytest.approx(2.306004135204166 * math.sqrt(2 * np.var(a, ddof=1) / 5))
    assert stats.paired_ci([0.5], [0.4])[1] is None and stats.welch_ci([0.5], [0.4, 0.3])[1] is None


def _rows(source: str, solved: dict[str, list[float]]) -> list[dict]:
    """verl's validation dump: one row per trajectory, its problem's prompt as ``input``."""
    return [{"data_source": source, "input": f"What is {problem}?", "solved_within_5": value, "uid": "x"}
            for problem, values in solved.items() for value in values]


def test_the_validation_gain_pairs_each_problem_with_itself():
    before = _rows("add", {"1+1": [1, 1], "2+2": [0, 0], "3+3": [1, 0], "4+4": [0, 1]})
    after = _rows("add", {"1+1": [1, 1], "2+2": [1, 0], "3+3": [1, 1], "4+4": [1, 1], "new": [1, 1]})
    after += [{"data_source": "add", "input": "What is 1+1?", "solved_within_5": None},  # a row without the value
              {"data_source": "add", "solved_within_5": 0.0}]  # or without its problem
    (gain,) = stats.validation_gain(before, after, "solved_within_5").values()
    diffs = [0.0, 0.5, 0.5, 0.5]  # per problem, in the problems both validations saw
    half = 3.182446305284263 * np.std(diffs, ddof=1) / 2  # scipy.stats.t.ppf(0.975, 3)
    assert gain["problems"] == 4 and gain["gain"] == pytest.approx(0.375)
    assert gain["ci"] == pytest.approx([0.375 - half, 0.375 + half])
    # by data source; a source only one validation saw has no gain
    both = stats.validation_gain(before + _rows("mul", {"2*3": [0, 0], "2*4": [1, 0]}),
                                 after + _rows("mul", {"2*3": [1, 1], "2*4": [1, 0]}) + _rows("sub", {"1-1": [1]}),
                                 "solved_within_5")
    assert sorted(both) == ["add", "mul"] and both["mul"]["gain"] == pytest.approx(0.5)
    assert stats.validation_gain(before, [], "solved_within_5") == {}

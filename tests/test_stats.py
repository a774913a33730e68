"""Paired significance tests against scipy and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from helpers import stats as S


def _per_query(values, metric="ndcg_at_10"):
    return {f"q{i}": {metric: float(v)} for i, v in enumerate(values)}


def test_t_test_equals_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.random(40), rng.random(40)
    t, p = S.paired_t_test(b - a)
    expected = sps.ttest_rel(b, a)
    assert t == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, abs=1e-12)


def test_randomization_exact_equals_scipy_permutation_test():
    rng = np.random.default_rng(2)
    a, b = rng.random(10), rng.random(10) + 0.2
    ours = S.randomization_test(b - a)
    theirs = sps.permutation_test(
        (b, a),
        lambda x, y: np.mean(x - y),
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    ).pvalue
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_randomization_hand_computed():
    # d = (1, 1): sign assignments give means 1, 0, 0, -1 -> two of four reach |1|
    assert S.randomization_test(np.array([1.0, 1.0])) == 0.5
    assert S.randomization_test(np.array([0.0, 0.0, 0.0])) == 1.0


def test_randomization_monte_carlo_close_to_exact_large_sample():
    rng = np.random.default_rng(3)
    d = rng.normal(0.05, 0.3, size=60)
    p = S.randomization_test(d, num_samples=20_000, seed=0)
    t_p = S.paired_t_test(d)[1]
    assert abs(p - t_p) < 0.03  # the two tests agree closely at n = 60
    assert S.randomization_test(d, num_samples=2000, seed=5) == S.randomization_test(
        d, num_samples=2000, seed=5
    )


def test_bootstrap_interval_matches_scipy_percentile():
    rng = np.random.default_rng(4)
    d = rng.normal(0.1, 0.2, size=50)
    low, high = S.bootstrap_ci(d, 0.95, num_samples=20_000, seed=0)
    ref = sps.bootstrap(
        (d,),
        np.mean,
        confidence_level=0.95,
        n_resamples=20_000,
        method="percentile",
        random_state=0,
    ).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.01) and high == pytest.approx(ref.high, abs=0.01)
    assert low < d.mean() < high


def test_compare_runs_only_shared_queries_and_counts():
    a = _per_query([0.1, 0.5, 0.5, 0.9])
    b = _per_query([0.3, 0.5, 0.4, 1.0, 0.7])  # q4 only in b
    result = S.compare_runs(a, b, "ndcg_at_10", num_samples=2000)
    assert result.num_queries == 4
    assert (result.wins, result.losses, result.ties) == (2, 1, 1)
    assert result.mean_difference == pytest.approx((0.2 + 0 - 0.1 + 0.1) / 4)
    assert result.mean_b - result.mean_a == pytest.approx(result.mean_difference)


def test_identical_runs_are_not_different():
    a = _per_query([0.2, 0.4, 0.6])
    result = S.compare_runs(a, a, "ndcg_at_10")
    assert result.mean_difference == 0 and result.t_test_p == 1.0 and result.randomization_p == 1.0


def test_compare_runs_errors():
    with pytest.raises(ValueError, match="no query in common"):
        S.compare_runs({"a": {"m": 1.0}}, {"b": {"m": 1.0}}, "m")
    with pytest.raises(ValueError, match="metric"):
        S.compare_runs({"a": {"m": 1.0}}, {"a": {"m": 1.0}}, "x")

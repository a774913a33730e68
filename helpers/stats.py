"""Is a difference between two runs real? Paired tests on per-query metrics.

Two runs on the same queries (two models, or one model with two settings) give two
per-query values of a metric; the differences ``d_i = b_i - a_i`` are what is tested
(Smucker, Allan and Carterette, *A comparison of statistical significance tests for
information retrieval evaluation*, CIKM 2007, https://doi.org/10.1145/1321440.1321528):

* **paired t-test**: ``t = mean(d) / (sd(d) / sqrt(n))`` with n - 1 degrees of freedom,
  two-sided (``scipy.stats.ttest_rel``);
* **randomisation (permutation) test**: under the null hypothesis the sign of each
  ``d_i`` is arbitrary; the p-value is the share of sign assignments whose
  ``|mean|`` is at least the observed one (exact enumeration up to 2^16 assignments,
  else a seeded Monte Carlo sample with the observed assignment counted once);
* **bootstrap confidence interval** of ``mean(d)``: percentile interval of the means of
  seeded resamples of the queries with replacement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

EXACT_LIMIT = 16


@dataclass(frozen=True)
class PairedComparison:
    """The paired difference b - a of one metric over the same queries.

    Attributes:
        metric: the metric key, e.g. ``"ndcg_at_10"``.
        num_queries: queries compared (those both runs have).
        mean_a: mean of run a.
        mean_b: mean of run b.
        mean_difference: mean of b - a.
        ci_low: lower end of the bootstrap confidence interval of the mean difference.
        ci_high: upper end.
        confidence: e.g. 0.95.
        t_statistic: the paired t statistic (nan when every difference is equal).
        t_test_p: two-sided p-value of the paired t-test (1.0 when all differences are 0).
        randomization_p: two-sided p-value of the randomisation test.
        wins: queries where b > a; losses: b < a; ties: b == a.
    """

    metric: str
    num_queries: int
    mean_a: float
    mean_b: float
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    t_statistic: float
    t_test_p: float
    randomization_p: float
    wins: int
    losses: int
    ties: int

    def as_dict(self) -> dict[str, Any]:
        """A plain dict, for JSON and tables."""
        return asdict(self)


def paired_t_test(differences: np.ndarray) -> tuple[float, float]:
    """Two-sided paired t-test on differences: ``(t, p)``; ``(nan, 1.0)`` when sd = 0."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or np.allclose(d, d[0]):
        return float("nan"), 1.0 if np.allclose(d, 0) else 0.0
    t = float(np.mean(d) / (np.std(d, ddof=1) / math.sqrt(len(d))))
    p = float(2 * stats.t.sf(abs(t), df=len(d) - 1))
    return t, p


def randomization_test(differences: np.ndarray, num_samples: int = 10_000, seed: int = 0) -> float:
    """Two-sided sign-flip randomisation test of mean(d) = 0.

    Exact when there are at most 2^16 sign assignments, otherwise ``num_samples`` seeded
    random assignments, with the p-value ``(count + 1) / (num_samples + 1)``.
    """
    d = np.asarray(differences, dtype=float)
    n = len(d)
    if n == 0:
        return 1.0
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, observed)
    if n <= EXACT_LIMIT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        means = np.abs(signs @ d) / n
        return float(np.mean(means >= observed - tolerance))
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, num_samples, 1000):
        size = min(1000, num_samples - start)
        signs = rng.choice((1.0, -1.0), size=(size, n))
        count += int(np.sum(np.abs(signs @ d) / n >= observed - tolerance))
    return (count + 1) / (num_samples + 1)


def bootstrap_ci(
    differences: np.ndarray, confidence: float = 0.95, num_samples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(d), resampling queries with replacement."""
    d = np.asarray(differences, dtype=float)
    if len(d) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(num_samples)
    for start in range(0, num_samples, 1000):
        size = min(1000, num_samples - start)
        idx = rng.integers(0, len(d), size=(size, len(d)))
        means[start : start + size] = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def compare_runs(
    per_query_a: Mapping[str, Mapping[str, float]],
    per_query_b: Mapping[str, Mapping[str, float]],
    metric: str,
    confidence: float = 0.95,
    num_samples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of one metric between two runs on the same queries.

    Args:
        per_query_a: query id -> metric key -> value (``Evaluation.per_query``) of run a.
        per_query_b: the same for run b.
        metric: the metric key, e.g. ``"ndcg_at_10"``.
        confidence: level of the bootstrap interval.
        num_samples: bootstrap resamples and Monte Carlo randomisation samples.
        seed: seed of both.

    Raises:
        ValueError: when the runs share no query or the metric is missing.
    """
    shared = [q for q in per_query_a if q in per_query_b]
    if not shared:
        raise ValueError("per_query_a, per_query_b: the runs have no query in common")
    if metric not in per_query_a[shared[0]] or metric not in per_query_b[shared[0]]:
        raise ValueError(f"metric: {metric!r} is not in both runs' per-query metrics")
    a = np.array([per_query_a[q][metric] for q in shared], dtype=float)
    b = np.array([per_query_b[q][metric] for q in shared], dtype=float)
    d = b - a
    t, t_p = paired_t_test(d)
    low, high = bootstrap_ci(d, confidence, num_samples, seed)
    return PairedComparison(
        metric=metric,
        num_queries=len(shared),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        mean_difference=float(d.mean()),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        t_statistic=t,
        t_test_p=t_p,
        randomization_p=randomization_test(d, num_samples, seed),
        wins=int(np.sum(d > 0)),
        losses=int(np.sum(d < 0)),
        ties=int(np.sum(d == 0)),
    )

"""The one-sided Mann-Whitney U test of sasa_bench.regression.significance."""

import math
import random

import pytest

from sasa_bench.regression import significance
from sasa_bench.regression.significance import mann_whitney_greater


def test_scipy_documented_example():
    # scipy.stats.mannwhitneyu docs: males vs females, U1 = 17, exact two-sided p = 0.1111
    # (= 2 x 7/126); the one-sided "greater" p is half of it.
    result = mann_whitney_greater([19, 22, 16, 29, 24], [20, 11, 17, 12])
    assert result.u == 17
    assert result.method == "exact"
    assert result.p_value == pytest.approx(7 / 126)


def test_complete_separation_is_one_ordering_out_of_all():
    result = mann_whitney_greater([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])
    assert result.u == 25
    assert result.p_value == pytest.approx(1 / math.comb(10, 5))
    reverse = mann_whitney_greater([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert reverse.u == 0 and reverse.p_value == 1.0


def test_u_distribution_counts_every_ordering():
    for n, m in ((1, 1), (3, 4), (7, 5), (15, 15)):
        counts = significance._u_counts(n, m)
        assert len(counts) == n * m + 1
        assert sum(counts) == math.comb(n + m, n)
        assert counts == counts[::-1]  # symmetric around n*m/2


def test_normal_approximation_agrees_with_exact_at_moderate_sizes():
    rng = random.Random(3)
    for _ in range(20):
        old = [rng.gauss(0, 1) for _ in range(20)]
        new = [rng.gauss(0.5, 1) for _ in range(20)]
        exact = mann_whitney_greater(new, old)
        normal = significance._normal_p(exact.u, 20, 20, sorted(new + old))
        assert exact.method == "exact"
        assert normal == pytest.approx(exact.p_value, abs=0.01)


def test_ties_use_the_normal_approximation_and_all_equal_is_no_evidence():
    tied = mann_whitney_greater([1, 2, 2, 3], [1, 1, 2])
    assert tied.method == "normal" and 0 < tied.p_value < 1
    assert mann_whitney_greater([5.0] * 6, [5.0] * 6).p_value == 1.0


def test_false_positive_rate_is_at_most_alpha_under_the_null():
    rng = random.Random(0)
    trials, alpha = 2000, 0.05
    hits = sum(
        mann_whitney_greater(
            [rng.random() for _ in range(15)], [rng.random() for _ in range(15)]
        ).p_value
        < alpha
        for _ in range(trials)
    )
    assert 0.03 < hits / trials <= alpha + 0.01


def test_empty_side_is_an_error():
    with pytest.raises(ValueError):
        mann_whitney_greater([], [1.0])

"""One-sided Mann-Whitney U test: are the samples of `new` stochastically larger than `old`?

Rank-based, so it needs no assumption about the shape of timing noise (skewed, with the odd
slow outlier) and a single outlier moves it by one rank, not by its size. Without ties and with
both samples of at most `EXACT_MAX` values, the p-value is exact (the U distribution counted
over every arrangement, as `scipy.stats.mannwhitneyu(method="exact")`); otherwise it is the
normal approximation with the tie-corrected variance and a continuity correction
(`method="asymptotic"`). scipy is not a dependency: the test is these few lines.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

#: largest sample size (each side) for which the exact distribution is counted
EXACT_MAX = 25


@dataclass(frozen=True)
class UTest:
    u: float  # pairs (new, old) with new > old, ties counted one half
    p_value: float  # P(U >= u) if new and old came from one distribution
    method: str  # "exact" | "normal"


def mann_whitney_greater(new: Sequence[float], old: Sequence[float]) -> UTest:
    """Test H1 "new tends to be larger than old" against H0 "same distribution"."""
    n, m = len(new), len(old)
    if not n or not m:
        raise ValueError("the U test needs at least one sample on each side")
    u = sum((x > y) + 0.5 * (x == y) for x in new for y in old)
    pooled = sorted([*new, *old])
    tied = len(set(pooled)) < len(pooled)
    if not tied and max(n, m) <= EXACT_MAX:
        at_least = sum(_u_counts(n, m)[math.ceil(u) :])
        return UTest(u, at_least / math.comb(n + m, n), "exact")
    return UTest(u, _normal_p(u, n, m, pooled), "normal")


@functools.cache
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """Number of orderings of n new and m old values giving U = 0 .. n*m (no ties)."""
    if n == 0 or m == 0:
        return (1,)
    # The largest value is either a new one (beating all m old: U grows by m) or an old one.
    with_new = _u_counts(n - 1, m)
    with_old = _u_counts(n, m - 1)
    counts = [0] * (n * m + 1)
    for u, count in enumerate(with_new):
        counts[u + m] += count
    for u, count in enumerate(with_old):
        counts[u] += count
    return tuple(counts)


def _normal_p(u: float, n: int, m: int, pooled: list[float]) -> float:
    total = n + m
    ties = sum(c**3 - c for c in _run_lengths(pooled))
    variance = n * m / 12 * (total + 1 - ties / (total * (total - 1)))
    if variance <= 0:  # every value equal: no evidence either way
        return 1.0
    z = (u - n * m / 2 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def _run_lengths(values: list[float]) -> list[int]:
    """Sizes of the groups of equal values in a sorted list."""
    runs, count = [], 1
    for before, after in zip(values, values[1:], strict=False):
        if after == before:
            count += 1
        else:
            runs.append(count)
            count = 1
    runs.append(count)
    return runs

"""Timing statistics: known samples, never the machine's speed."""

import numpy as np
import pytest
import torch

from sasa_bench.measure.timing import WIDE_SPREAD, summarize, time_steps, timer_name, warm_up

CPU = torch.device("cpu")


def test_statistics_of_known_samples():
    stats = summarize([4.0, 1.0, 3.0, 2.0])
    # numpy's linear percentiles of 1, 2, 3, 4: q1 = 1.75, median = 2.5, q3 = 3.25
    assert stats.median_ms == 2.5
    assert stats.iqr_ms == pytest.approx(1.5)
    assert (stats.min_ms, stats.max_ms, stats.mean_ms) == (1.0, 4.0, 2.5)
    assert stats.samples_ms == (4.0, 1.0, 3.0, 2.0)  # kept, in order
    assert stats.spread == pytest.approx(0.6) and stats.wide
    assert "wide spread" in stats.warning()


def test_narrow_spread_is_not_flagged_and_odd_counts_take_the_middle():
    samples = [10.0, 10.1, 9.9, 10.0, 50.0]  # one slow outlier
    stats = summarize(samples)
    assert stats.median_ms == 10.0
    q1, q3 = np.percentile(samples, [25, 75])
    assert stats.iqr_ms == pytest.approx(q3 - q1) and stats.spread < WIDE_SPREAD
    assert not stats.wide and stats.warning() is None
    assert stats.max_ms == 50.0 and stats.min_ms == 9.9


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        summarize([])


def test_time_steps_times_every_step_after_the_warm_up():
    calls = []
    first = warm_up(lambda: calls.append("warm"), CPU, 2)
    samples = time_steps(lambda: calls.append("timed"), CPU, 3)
    assert calls == ["warm"] * 2 + ["timed"] * 3
    assert len(samples) == 3 and all(s >= 0 for s in samples) and first >= 0
    assert warm_up(lambda: None, CPU, 0) is None
    assert timer_name(CPU) == "perf_counter" and timer_name(torch.device("cuda")) == "cuda_events"
    with pytest.raises(ValueError):
        time_steps(lambda: None, CPU, 0)

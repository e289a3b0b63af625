"""Timing statistics: known samples, never the machine's speed."""

import numpy as np
import pytest
import torch

from sasa_bench.measure import timing
from sasa_bench.measure.load import Contention
from sasa_bench.measure.timing import (
    WIDE_SPREAD,
    Stopping,
    Timed,
    choose_timer,
    measure_steps,
    summarize,
    time_steps,
    warm_up,
)

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
    assert choose_timer(CPU, 1) == "thread-cpu" and choose_timer(CPU, 2) == "wall"
    assert choose_timer(torch.device("cuda"), 8) == "cuda_events"
    with pytest.raises(ValueError):
        time_steps(lambda: None, CPU, 0)


def test_stopping_waits_for_the_minimum_then_stops_when_stable():
    rule = Stopping(min_samples=5, max_samples=100, budget_s=10.0, target_spread=0.05)
    steady = [10.0, 10.1, 9.9, 10.0]
    assert rule.done(steady, 0.1) is None  # 4 < 5 samples
    assert rule.done([*steady, 10.05], 0.1) == "stable"  # IQR 1 % of the median


def test_stopping_on_a_noisy_machine_ends_at_the_budget_or_the_sample_cap():
    rule = Stopping(min_samples=5, max_samples=8, budget_s=1.0, target_spread=0.05)
    noisy = [10.0, 14.0, 9.0, 20.0, 11.0]  # IQR 36 % of the median
    assert rule.done(noisy, 0.5) is None  # not stable, budget left: take another
    assert rule.done(noisy, 1.5) == "budget"
    assert rule.done([*noisy, 30.0, 8.0, 12.0], 0.5) == "max_samples"
    with pytest.raises(ValueError):
        Stopping(min_samples=5, max_samples=3)


class FakeClocks:
    """Wall, thread and process clocks advanced by a step: `wall_per_cpu` x the thread's CPU
    time passes on the wall (a preempted thread), `extra_threads` x it on other threads."""

    def __init__(self, monkeypatch, cpu_ms, wall_per_cpu=1.0, extra_threads=0.0):
        self.wall = self.thread = self.process = 0.0
        self.cpu_ms, self.wall_per_cpu, self.extra = list(cpu_ms), wall_per_cpu, extra_threads
        monkeypatch.setattr(timing.time, "perf_counter", lambda: self.wall)
        monkeypatch.setattr(timing.time, "thread_time", lambda: self.thread)
        monkeypatch.setattr(timing.time, "process_time", lambda: self.process)

    def step(self):
        seconds = self.cpu_ms.pop(0) / 1e3
        self.thread += seconds
        self.process += seconds * (1 + self.extra)
        self.wall += seconds * self.wall_per_cpu


def test_one_thread_is_timed_in_cpu_time_and_its_wall_time_kept(monkeypatch):
    clocks = FakeClocks(monkeypatch, [10.0] * 6, wall_per_cpu=3.0)
    timed = measure_steps(clocks.step, CPU, threads=1, stopping=Stopping(min_samples=6))
    assert timed.timer == "thread-cpu" and timed.stopped_by == "stable"
    assert timed.stats.median_ms == pytest.approx(10.0)
    assert timed.wall_ms == pytest.approx((30.0,) * 6)
    assert timed.contention.wall_over_cpu == pytest.approx(3.0)
    assert timed.contention.seen  # the thread waited for a core ...
    assert timed.unreliable_reasons() == []  # ... but its CPU time is not distorted by that


def test_work_on_other_threads_makes_a_cpu_timed_number_unreliable(monkeypatch):
    clocks = FakeClocks(monkeypatch, [10.0] * 5, extra_threads=1.0)
    timed = measure_steps(clocks.step, CPU, threads=1, stopping=Stopping(min_samples=5))
    (reason,) = timed.unreliable_reasons()
    assert "other threads did part of the work" in reason and "2.00x" in reason


def contention(**given) -> Contention:
    fields = {"threads": 2, "cpu_count": 2, "other_busy_cores": 0.0, "wall_over_cpu": None,
              "involuntary_switches": 0, "wall_s": 1.0, **given}  # fmt: skip
    return Contention(**fields)


def test_contention_is_seen_from_busy_cores_waiting_and_switches():
    assert not contention().seen and contention().reasons() == []
    busy = contention(other_busy_cores=1.9)
    assert busy.seen and "1.9 of 2 cores busy: 0.1 idle for 2 thread(s)" in busy.reasons()[0]
    assert contention(threads=1, other_busy_cores=0.9).reasons() == []  # one idle core: enough
    assert "wall time 1.60x" in contention(wall_over_cpu=1.6).reasons()[0]
    assert not contention(wall_over_cpu=1.1).seen
    assert "200 involuntary" in contention(involuntary_switches=200).reasons()[0]
    assert contention(other_busy_cores=None).reasons() == []  # no /proc/stat: not a sign
    assert contention(other_busy_cores=1.9).to_dict()["seen"] is True


def timed(samples, *, timer="wall", seen=False) -> Timed:
    load = contention(other_busy_cores=1.9 if seen else 0.0, threads=1)
    stats = summarize(samples)
    return Timed(timer, stats, stats.samples_ms, stats.samples_ms, stats.samples_ms, "stable", load)


def test_a_number_is_unreliable_when_noisy_or_wall_timed_under_contention():
    assert timed([10.0] * 5).to_metrics()["reliable"] is True
    noisy = timed([10.0, 14.0, 9.0, 20.0, 11.0]).to_metrics()
    assert noisy["reliable"] is False
    assert noisy["unreliable_reasons"] == ["wide spread: IQR 36% of the median over 5 samples"]
    loaded = timed([10.0] * 5, seen=True).to_metrics()
    assert (
        not loaded["reliable"]
        and "contention under a wall timer" in loaded["unreliable_reasons"][0]
    )
    assert timed([10.0] * 5, timer="thread-cpu", seen=True).to_metrics()["reliable"] is True

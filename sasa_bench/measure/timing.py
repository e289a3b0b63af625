"""Time of a repeated step: warm-up excluded, device work synchronized, every sample kept.

Timers (`choose_timer`), named in every record:

- `cuda_events`: on CUDA, a pair of CUDA events per step (device time of the work it queued);
- `thread-cpu`: on a CPU with one intra-op thread (every op runs on the calling thread), the
  CPU time of that thread. Other processes barely move it: on a 2-core machine running three
  busy loops, the wall time of a 3 ms attention call grew 5x against a 0.1 ms convolution's,
  its CPU time by under 20 %. Wall time is kept beside it, per sample;
- `wall`: elsewhere (several CPU threads, MPS), `time.perf_counter` around the step, with a
  synchronize on devices that run asynchronously. A busy machine distorts it, so a wall-timed
  measurement that saw contention (`sasa_bench.measure.load`) is marked unreliable.

`measure_steps` repeats the step until the estimate is stable or a time budget runs out
(`Stopping`, the rule of torch.utils.benchmark's `adaptive_autorange`: stop once IQR / median is
under a target; written out here because the library times with one clock, and sasa_bench keeps
wall and CPU time of every sample). Statistics: the median and the inter-quartile range (robust
to the odd slow step), the minimum, and a warning when the spread is wide (IQR / median above
`WIDE_SPREAD`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sasa_bench.measure.load import Contention, LoadProbe

#: IQR / median above which a measurement is flagged as noisy
WIDE_SPREAD = 0.10


@dataclass(frozen=True)
class TimingStats:
    samples_ms: tuple[float, ...]  # every timed step, in order
    median_ms: float
    iqr_ms: float  # 75th - 25th percentile (linear interpolation, numpy's default)
    min_ms: float
    max_ms: float
    mean_ms: float

    @property
    def spread(self) -> float:
        """IQR relative to the median."""
        return self.iqr_ms / self.median_ms if self.median_ms else 0.0

    @property
    def wide(self) -> bool:
        return self.spread > WIDE_SPREAD

    def warning(self) -> str | None:
        if not self.wide:
            return None
        return (
            f"wide spread: IQR over {100 * WIDE_SPREAD:.0f}% of the median (see the IQR column); "
            "the machine may be busy or the steps too few"
        )


def summarize(samples_ms: list[float] | tuple[float, ...]) -> TimingStats:
    """Median, IQR, min, max and mean of the samples (milliseconds)."""
    if not samples_ms:
        raise ValueError("no timing samples")
    values = np.asarray(samples_ms, dtype=float)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return TimingStats(
        samples_ms=tuple(float(v) for v in values),
        median_ms=float(median),
        iqr_ms=float(q3 - q1),
        min_ms=float(values.min()),
        max_ms=float(values.max()),
        mean_ms=float(values.mean()),
    )


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished the work queued so far (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def choose_timer(device: torch.device, threads: int) -> str:
    """The timer a measurement on `device` with `threads` intra-op threads uses."""
    if device.type == "cuda":
        return "cuda_events"
    return "thread-cpu" if device.type == "cpu" and threads == 1 else "wall"


def warm_up(step: Callable[[], object], device: torch.device, steps: int) -> float | None:
    """Run `steps` untimed steps; return the first one's time in ms (it includes one-off costs:
    compilation, cuDNN autotuning, allocator growth), or None when steps is 0."""
    first_ms = None
    for index in range(steps):
        start = time.perf_counter()
        step()
        if index == 0:
            synchronize(device)
            first_ms = 1e3 * (time.perf_counter() - start)
    synchronize(device)
    return first_ms


def time_steps(step: Callable[[], object], device: torch.device, steps: int) -> list[float]:
    """Milliseconds of each of `steps` calls of `step`, device work included."""
    if steps < 1:
        raise ValueError(f"need at least one timed step, got {steps}")
    if device.type == "cuda":
        return _time_cuda(step, device, steps)
    samples = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(device)
        samples.append(1e3 * (time.perf_counter() - start))
    return samples


def _time_cuda(step: Callable[[], object], device: torch.device, steps: int) -> list[float]:
    with torch.cuda.device(device):
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
            for _ in range(steps)
        ]
        for start, end in events:
            start.record()
            step()
            end.record()
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) for start, end in events]


def thread_cpu_steps(step: Callable[[], object], steps: int) -> list[float]:
    """Milliseconds of CPU time the calling thread spent in each of `steps` calls of `step`.

    For CPU work on one intra-op thread (`torch.set_num_threads(1)`: every op runs on the
    calling thread). Unlike wall time it does not grow when other processes preempt this one:
    on a 2-core machine running three busy loops, the wall time of a 3 ms attention call grew
    5x against a 0.1 ms convolution's, its CPU time by under 20 %. Time spent in other
    threads (intra-op workers, a GPU) is not seen: use `time_steps` for those."""
    if steps < 1:
        raise ValueError(f"need at least one timed step, got {steps}")
    samples = []
    for _ in range(steps):
        start = time.thread_time()
        step()
        samples.append(1e3 * (time.thread_time() - start))
    return samples


#: process CPU time over the timing thread's above which other threads did part of the work
OTHER_THREADS = 1.15


@dataclass(frozen=True)
class Stopping:
    """When `measure_steps` stops: at least `min_samples`; then as soon as IQR / median is at
    most `target_spread` ("stable"), or `max_samples` are taken, or `budget_s` seconds of timed
    steps have passed ("budget")."""

    min_samples: int = 10
    max_samples: int = 200
    budget_s: float = 10.0
    target_spread: float = 0.05

    def __post_init__(self) -> None:
        if self.min_samples < 1 or self.max_samples < self.min_samples or self.budget_s < 0:
            raise ValueError(f"bad stopping rule {self}")

    def done(self, samples_ms: list[float], elapsed_s: float) -> str | None:
        """Why to stop after these samples, or None to take another."""
        if len(samples_ms) < self.min_samples:
            return None
        if summarize(samples_ms).spread <= self.target_spread:
            return "stable"
        if len(samples_ms) >= self.max_samples:
            return "max_samples"
        return "budget" if elapsed_s >= self.budget_s else None


@dataclass(frozen=True)
class Timed:
    """The samples of one measurement: its timer's, and wall and CPU time beside them."""

    timer: str
    stats: TimingStats  # of the timer's samples
    wall_ms: tuple[float, ...]
    thread_cpu_ms: tuple[float, ...]  # the calling thread's CPU time per step
    process_cpu_ms: tuple[float, ...]  # every thread of this process, per step
    stopped_by: str  # "stable" | "max_samples" | "budget"
    contention: Contention

    def unreliable_reasons(self) -> list[str]:
        """Why the number should not be taken as fact (empty: it can be)."""
        reasons = []
        if self.stats.wide:
            reasons.append(
                f"wide spread: IQR {100 * self.stats.spread:.0f}% of the median over "
                f"{len(self.stats.samples_ms)} samples"
            )
        if self.timer == "wall" and self.contention.seen:
            reasons.append("contention under a wall timer: " + "; ".join(self.contention.reasons()))
        if self.timer == "thread-cpu":
            ratios = [
                p / t for p, t in zip(self.process_cpu_ms, self.thread_cpu_ms, strict=True) if t > 0
            ]
            if ratios and statistics.median(ratios) > OTHER_THREADS:
                reasons.append(
                    f"other threads did part of the work (process CPU time "
                    f"{statistics.median(ratios):.2f}x the timing thread's): thread-cpu undercounts"
                )
        return reasons

    def to_metrics(self) -> dict[str, object]:
        """The fields every timed record carries (times per step, in ms)."""
        reasons = self.unreliable_reasons()
        return {
            "timer": self.timer,
            "samples_ms": list(self.stats.samples_ms),
            "wall_samples_ms": list(self.wall_ms),
            "thread_cpu_samples_ms": list(self.thread_cpu_ms),
            "process_cpu_samples_ms": list(self.process_cpu_ms),
            "samples": len(self.stats.samples_ms),
            "stopped_by": self.stopped_by,
            "median_ms": self.stats.median_ms,
            "iqr_ms": self.stats.iqr_ms,
            "min_ms": self.stats.min_ms,
            "max_ms": self.stats.max_ms,
            "mean_ms": self.stats.mean_ms,
            "spread": self.stats.spread,
            "spread_wide": self.stats.wide,
            "contention": self.contention.to_dict(),
            "reliable": not reasons,
            "unreliable_reasons": reasons,
        }


def measure_steps(
    step: Callable[[], object],
    device: torch.device,
    *,
    threads: int,
    stopping: Stopping,
    timer: str | None = None,
) -> Timed:
    """Time `step` until `stopping` says so (run it warm: see `warm_up`). `timer`: one of
    `choose_timer`'s, where the step's own runtime decides it (default: `choose_timer`)."""
    timer = timer or choose_timer(device, threads)
    probe = LoadProbe().start()
    primary: list[float] = []
    wall: list[float] = []
    thread_cpu: list[float] = []
    process_cpu: list[float] = []
    begin = time.perf_counter()
    while True:
        events = None
        if timer == "cuda_events":
            events = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
        w0, t0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        if events:
            events[0].record()
        step()
        if events:
            events[1].record()
        synchronize(device)
        wall.append(1e3 * (time.perf_counter() - w0))
        thread_cpu.append(1e3 * (time.thread_time() - t0))
        process_cpu.append(1e3 * (time.process_time() - p0))
        if events:
            primary.append(events[0].elapsed_time(events[1]))
        else:
            primary.append(thread_cpu[-1] if timer == "thread-cpu" else wall[-1])
        stopped = stopping.done(primary, time.perf_counter() - begin)
        if stopped:
            break
    ratio = None
    if timer == "thread-cpu":
        ratios = [w / t for w, t in zip(wall, thread_cpu, strict=True) if t > 0]
        ratio = statistics.median(ratios) if ratios else None
    return Timed(
        timer,
        summarize(primary),
        tuple(wall),
        tuple(thread_cpu),
        tuple(process_cpu),
        stopped,
        probe.stop(threads, ratio),
    )

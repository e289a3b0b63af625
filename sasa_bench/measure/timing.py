"""Wall time of a repeated step: warm-up excluded, device work synchronized, every sample kept.

On CUDA each step is timed with a pair of CUDA events (device time of the work the step queued,
read after one synchronize at the end, so the host never stalls between steps). Elsewhere a host
timer (`time.perf_counter`) brackets each step, with a synchronize before reading it on devices
that run asynchronously (MPS). Statistics follow torch.utils.benchmark: the median and the
inter-quartile range (robust to the odd slow step), the minimum, and a warning when the spread is
wide (IQR / median above `WIDE_SPREAD`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

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


def timer_name(device: torch.device) -> str:
    return "cuda_events" if device.type == "cuda" else "perf_counter"


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

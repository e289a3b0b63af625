"""How busy the machine is, and whether other work got in the way of a measurement.

Shared machines are the normal case: other processes hold cores while sasa_bench measures. Three
signs of contention are read around a timed region, none of which needs privileges:

- the machine's busy cores (`/proc/stat`) minus this process's own CPU use: cores that other
  processes kept busy, so fewer idle cores than the measurement's threads;
- wall time far above the CPU time of the working thread (the thread waited for a core);
- involuntary context switches of this process (`getrusage`): the scheduler took the core away.

`Contention.reasons()` turns them into sentences for the record. Where /proc/stat is missing
(not Linux), the busy-core count is None and the other two signs still count.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_PROC_STAT = Path("/proc/stat")
#: wall time over CPU time of the working thread above which it waited for a core
WALL_OVER_CPU = 1.25
#: involuntary context switches per second of wall time above which the scheduler interfered
SWITCHES_PER_S = 50.0


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, or None where /proc/stat is not there."""
    try:
        fields = _PROC_STAT.read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_cores(window_s: float = 0.25) -> float | None:
    """Cores other processes keep busy, averaged over `window_s` of sleep (this process is idle
    meanwhile); None where it cannot be read."""
    before = _cpu_jiffies()
    time.sleep(window_s)
    after = _cpu_jiffies()
    if before is None or after is None or after[1] == before[1]:
        return None
    return (os.cpu_count() or 1) * (after[0] - before[0]) / (after[1] - before[1])


def free_cores(window_s: float = 0.25) -> int:
    """Whole cores nobody else is using now (at least 1): a thread count that does not
    oversubscribe the machine."""
    busy = busy_cores(window_s)
    total = os.cpu_count() or 1
    return max(1, int(total - (busy or 0.0) + 0.5))


@dataclass(frozen=True)
class Contention:
    """What other work did to a timed region (the record's `contention`)."""

    threads: int  # working threads of the measurement
    cpu_count: int
    other_busy_cores: float | None  # busy cores minus this process's own CPU use
    wall_over_cpu: float | None  # median per-sample wall / thread CPU time (one thread only)
    involuntary_switches: int
    wall_s: float

    @property
    def seen(self) -> bool:
        return bool(self.reasons())

    def reasons(self) -> list[str]:
        found = []
        idle = None if self.other_busy_cores is None else self.cpu_count - self.other_busy_cores
        if idle is not None and idle < self.threads - 0.25:
            found.append(
                f"other processes kept {self.other_busy_cores:.1f} of {self.cpu_count} cores "
                f"busy: {max(idle, 0):.1f} idle for {self.threads} thread(s)"
            )
        if self.wall_over_cpu is not None and self.wall_over_cpu > WALL_OVER_CPU:
            found.append(f"wall time {self.wall_over_cpu:.2f}x the working thread's CPU time")
        rate = self.involuntary_switches / self.wall_s if self.wall_s > 0 else 0.0
        if rate > SWITCHES_PER_S:
            found.append(f"{rate:.0f} involuntary context switches per second")
        return found

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "seen": self.seen, "reasons": self.reasons()}


class LoadProbe:
    """Read around a timed region: `start()` before it, `stop(threads, wall_over_cpu)` after."""

    def start(self) -> LoadProbe:
        self._jiffies = _cpu_jiffies()
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        self._switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
        return self

    def stop(self, threads: int, wall_over_cpu: float | None = None) -> Contention:
        wall = time.perf_counter() - self._wall
        own_cpu = time.process_time() - self._cpu
        switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - self._switches
        jiffies, cpu_count = _cpu_jiffies(), os.cpu_count() or 1
        other = None
        if self._jiffies is not None and jiffies is not None and jiffies[1] > self._jiffies[1]:
            busy = cpu_count * (jiffies[0] - self._jiffies[0]) / (jiffies[1] - self._jiffies[1])
            other = max(0.0, busy - (own_cpu / wall if wall > 0 else 0.0))
        return Contention(threads, cpu_count, other, wall_over_cpu, switches, wall)

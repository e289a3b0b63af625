"""Peak memory of a measured region, reset before each measurement.

- CUDA: the caching allocator's peaks (`max_memory_allocated`: bytes in live tensors;
  `max_memory_reserved`: bytes the allocator holds from the driver), reset with
  `reset_peak_memory_stats` before the region. Device memory in use as the driver sees it
  (other processes and the CUDA context included) comes from NVML (`sasa_bench.analysis.power`).
- Every device: the host process's peak resident set size (VmHWM). On Linux it is reset before
  the region by writing 5 to /proc/self/clear_refs; where that is not possible the peak is the
  process's since it started (each measurement of a sweep runs in a fresh process, see
  `sasa_bench.sweep`), and the record says so.
- MPS keeps no peak statistic: only the host RSS is reported there.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class MemoryStats:
    peak_allocated_bytes: int | None  # allocator peak of live tensors (CUDA)
    peak_reserved_bytes: int | None  # allocator peak held from the driver (CUDA)
    peak_rss_bytes: int | None  # host resident set peak of this process
    rss_scope: str  # "region" (reset before it) or "process" (since the process started)
    note: str | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class PeakMemory:
    """`reset()` before the region, `read()` after it."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss_scope = "process"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.rss_scope = "region" if reset_rss_peak() else "process"

    def read(self) -> MemoryStats:
        allocated = reserved = None
        note = None
        if self.device.type == "cuda":
            allocated = torch.cuda.max_memory_allocated(self.device)
            reserved = torch.cuda.max_memory_reserved(self.device)
        elif self.device.type == "mps":
            note = "the MPS allocator keeps no peak statistic; host RSS only"
        else:
            note = "CPU: peak host RSS (the allocator keeps no peak statistic)"
        if self.rss_scope == "process":
            scope = "peak RSS since the process started (could not reset it)"
            note = f"{note}; {scope}" if note else scope
        return MemoryStats(allocated, reserved, peak_rss_bytes(), self.rss_scope, note)


_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_rss_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where impossible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    """VmHWM of this process (Linux), else getrusage's ru_maxrss (peak since start)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB elsewhere

"""Peak memory: every probe sasa_bench measures memory with.

Of a measured region (`PeakMemory`, reset before each measurement):

- CUDA: the caching allocator's peaks (`max_memory_allocated`: bytes in live tensors;
  `max_memory_reserved`: bytes the allocator holds from the driver), reset with
  `reset_peak_memory_stats` before the region. Device memory in use as the driver sees it
  (other processes and the CUDA context included) comes from NVML (`sasa_bench.measure.power`).
- Every device: the host process's peak resident set size (VmHWM). On Linux it is reset before
  the region by writing 5 to /proc/self/clear_refs; where that is not possible the peak is the
  process's since it started (each measurement of a sweep runs in a fresh process, see
  `sasa_bench.measure.sweep`), and the record says so.
- MPS keeps no peak statistic: only the host RSS is reported there.

Of one call, or of each layer of a forward pass (`tensor_peak`, `step_peak_bytes`): the bytes of
tensors alive above what was allocated when the call began. On CUDA from the caching allocator;
elsewhere from a dispatch mode (`LiveTensorBytes`) that adds up the storages each operation
creates and subtracts them when they are freed: deterministic, but blind to what one kernel
allocates inside itself.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from sasa_bench.measure.timing import synchronize


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


class CudaTensorBytes(contextlib.AbstractContextManager):
    """The CUDA caching allocator's bytes in live tensors, and their peak."""

    source = "cuda-allocator"

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def current(self) -> int:
        return torch.cuda.memory_allocated(self.device)

    def peak(self) -> int:
        return torch.cuda.max_memory_allocated(self.device)

    def reset_peak(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def __exit__(self, *exc: object) -> None:
        return None


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storages created under this mode and still alive, and their peak."""

    source = "live-tensors"

    def __init__(self) -> None:
        super().__init__()
        self._live = 0
        self._peak = 0
        self._seen = WeakIdKeyDictionary()  # storages counted (a view shares its base's)

    def current(self) -> int:
        return self._live

    def peak(self) -> int:
        return self._peak

    def reset_peak(self) -> None:
        self._peak = self._live

    def _freed(self, nbytes: int) -> None:
        self._live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            try:
                storage = tensor.untyped_storage()
            except (RuntimeError, NotImplementedError):  # sparse, mkldnn: not tracked
                continue
            if storage in self._seen:
                continue  # a view, or an in-place result
            self._seen[storage] = True
            nbytes = storage.nbytes()
            self._live += nbytes
            self._peak = max(self._peak, self._live)
            weakref.finalize(storage, self._freed, nbytes)
        return out


def tensor_peak(device: torch.device) -> CudaTensorBytes | LiveTensorBytes:
    """The tracker of tensor bytes for `device` (enter it around the work it should see): the
    allocator on CUDA, else a dispatch mode that adds up the storages operations create."""
    return CudaTensorBytes(device) if device.type == "cuda" else LiveTensorBytes()


def step_peak_bytes(step: Callable[[], object], device: torch.device) -> tuple[int, str]:
    """Bytes one call of `step` needed above what was allocated before it, and how measured."""
    tracker = tensor_peak(device)
    with tracker:
        synchronize(device)
        before = tracker.current()
        tracker.reset_peak()
        step()
        synchronize(device)
        return tracker.peak() - before, tracker.source

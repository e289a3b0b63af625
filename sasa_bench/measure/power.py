"""Power, energy, utilization, clocks, temperature and throttling of a GPU during a region (NVML).

A background thread samples NVML every `interval_s` while the timed steps run. Energy is the
difference of the board's total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ since
the driver loaded) over the region: it counts the whole board (idle power and other processes
included), and the counter updates only every few tens to hundreds of milliseconds, so over a
region shorter than `SHORT_REGION_S` it is unreliable and the record says so. The integral of the
sampled power is kept beside it as a cross-check (and used where the counter is missing).

Without a GPU, or without NVML (nvidia-ml-py missing, no driver, a query unsupported), the
fields are None and `note` says why; nothing raises.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

#: regions shorter than this get a warning about the energy counter's update rate
SHORT_REGION_S = 1.0


@dataclass
class PowerStats:
    energy_j: float | None = None  # over the region
    energy_source: str | None = None  # "total_energy_counter" | "power_integral"
    energy_integral_j: float | None = None  # trapezoid of the sampled power, cross-check
    joules_per_image: float | None = None
    power_mean_w: float | None = None
    power_max_w: float | None = None
    gpu_util_mean_pct: float | None = None
    memory_util_mean_pct: float | None = None
    sm_clock_mean_mhz: float | None = None
    sm_clock_min_mhz: float | None = None
    temperature_max_c: float | None = None
    device_memory_used_max_bytes: int | None = None  # as the driver sees it, all processes
    throttle_reasons: list[str] = field(default_factory=list)  # seen in any sample
    nvml_samples: int = 0
    nvml_index: int | str | None = None  # the physical GPU NVML measured
    note: str | None = None  # why fields are empty, or what to keep in mind

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_nvml() -> tuple[ModuleType | None, str | None]:
    """pynvml, initialized, or None and the reason it is unusable."""
    try:
        import pynvml
    except ImportError:
        return None, "NVML unavailable: nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as error:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return None, f"NVML unavailable: {error}"
    return pynvml, None


def nvml_index(cuda_index: int, visible: str | None = None) -> int | str:
    """The NVML handle key of torch's cuda:N. NVML ignores CUDA_VISIBLE_DEVICES, torch does
    not: entry N of that list is the physical index (or a GPU-/MIG- UUID)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    entries = [e.strip() for e in (visible or "").split(",") if e.strip()]
    if not entries:
        return cuda_index
    if cuda_index >= len(entries):
        raise ValueError(f"cuda:{cuda_index} is not in CUDA_VISIBLE_DEVICES={visible!r}")
    entry = entries[cuda_index]
    return int(entry) if entry.isdigit() else entry


def cuda_index_of(device: str) -> int | None:
    """0 for "cuda", N for "cuda:N", None for any other device."""
    kind, _, index = device.partition(":")
    if kind != "cuda":
        return None
    return int(index) if index else 0


class PowerMonitor:
    """Context manager sampling NVML for the duration of the `with` block; then `result()`."""

    def __init__(self, device: str, *, interval_s: float = 0.02, nvml: ModuleType | None = None):
        self.device = device
        self.interval_s = interval_s
        self._nvml = nvml
        self._owns_nvml = False  # initialized here, so shut down here
        self._handle = None
        self._probes: dict[str, Any] = {}
        self._samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy = [None, None]
        self._times = [0.0, 0.0]
        self.stats = PowerStats()

    def __enter__(self) -> PowerMonitor:
        index = cuda_index_of(self.device)
        if index is None:
            self.stats.note = (
                f"no GPU (device {self.device}): power, energy and NVML metrics not measured"
            )
            return self
        if self._nvml is None:
            self._nvml, reason = load_nvml()
            if self._nvml is None:
                self.stats.note = reason
                return self
            self._owns_nvml = True
        try:
            self._open(nvml_index(index))
        except Exception as error:
            self.stats.note = f"NVML unavailable for {self.device}: {error}"
            self._handle = None
            return self
        self._times[0] = time.perf_counter()
        self._energy[0] = self._query(self._nvml.nvmlDeviceGetTotalEnergyConsumption)
        self._sample()
        self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._times[1] = time.perf_counter()
            self._energy[1] = self._query(self._nvml.nvmlDeviceGetTotalEnergyConsumption)
            self._stop.set()
            self._thread.join()
            self._sample()
        if self._owns_nvml:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def result(self, images: int) -> PowerStats:
        """Statistics over the region; `images` processed in it give joules per image."""
        if self._handle is None:
            return self.stats
        return summarize_samples(
            self._samples,
            energy_mj=self._energy,
            seconds=self._times[1] - self._times[0],
            images=images,
            reasons=throttle_reason_names(self._nvml),
            stats=self.stats,
        )

    def _open(self, key: int | str) -> None:
        nvml = self._nvml
        if isinstance(key, int):
            self._handle = nvml.nvmlDeviceGetHandleByIndex(key)
        else:
            self._handle = nvml.nvmlDeviceGetHandleByUUID(key)
        self.stats.nvml_index = key
        throttle = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        self._probes = {
            "power_w": lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1e3,  # mW
            "util": nvml.nvmlDeviceGetUtilizationRates,
            "sm_clock_mhz": lambda h: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM),
            "temperature_c": lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
            "memory_used": lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used,
            "throttle": throttle,
        }

    def _query(self, fn: Any) -> Any:
        try:
            return fn(self._handle)
        except Exception:  # NVMLError_NotSupported and friends: the field stays empty
            return None

    def _sample(self) -> None:
        sample = {"t": time.perf_counter()}
        for name, probe in list(self._probes.items()):
            value = None if probe is None else self._query(probe)
            if value is None:
                self._probes.pop(name)  # unsupported here: stop asking
            sample[name] = value
        self._samples.append(sample)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()


def throttle_reason_names(nvml: ModuleType) -> dict[int, str]:
    """Bit -> name of NVML's clock throttle (event) reasons, e.g. 0x4 -> "SwPowerCap"."""
    names = {}
    for prefix in ("nvmlClocksThrottleReason", "nvmlClocksEventReason"):
        for attr in dir(nvml):
            name = attr[len(prefix) :]
            if attr.startswith(prefix) and name not in ("All", "None", "Unknown"):
                names.setdefault(int(getattr(nvml, attr)), name)
    return names


def summarize_samples(
    samples: list[dict[str, Any]],
    *,
    energy_mj: list[float | None],
    seconds: float,
    images: int,
    reasons: dict[int, str],
    stats: PowerStats | None = None,
) -> PowerStats:
    """PowerStats from NVML samples and the energy counter read before and after the region."""
    stats = stats or PowerStats()
    stats.nvml_samples = len(samples)

    def values(key: str, attr: str | None = None) -> list[float]:
        found = [s[key] for s in samples if s.get(key) is not None]
        return [getattr(v, attr) for v in found] if attr else found

    power = values("power_w")
    stats.power_mean_w = _mean(power)
    stats.power_max_w = max(power, default=None)
    timed = [(s["t"], s["power_w"]) for s in samples if s.get("power_w") is not None]
    if len(timed) > 1:
        stats.energy_integral_j = sum(
            (t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(timed, timed[1:], strict=False)
        )
    stats.gpu_util_mean_pct = _mean(values("util", "gpu"))
    stats.memory_util_mean_pct = _mean(values("util", "memory"))
    clocks = values("sm_clock_mhz")
    stats.sm_clock_mean_mhz = _mean(clocks)
    stats.sm_clock_min_mhz = min(clocks, default=None)
    stats.temperature_max_c = max(values("temperature_c"), default=None)
    used = values("memory_used")
    stats.device_memory_used_max_bytes = int(max(used)) if used else None
    mask = 0
    for bits in values("throttle"):
        mask |= int(bits)
    stats.throttle_reasons = sorted(name for bit, name in reasons.items() if mask & bit)

    notes = []
    start, end = energy_mj
    if start is not None and end is not None:
        stats.energy_j = (end - start) / 1e3
        stats.energy_source = "total_energy_counter"
    elif stats.energy_integral_j is not None:
        stats.energy_j = stats.energy_integral_j
        stats.energy_source = "power_integral"
        notes.append("no total-energy counter on this GPU: energy integrated from power samples")
    if stats.energy_j is not None and images:
        stats.joules_per_image = stats.energy_j / images
    if stats.energy_j is not None and seconds < SHORT_REGION_S:
        notes.append(
            f"timed region {seconds:.2f} s is shorter than {SHORT_REGION_S:.0f} s: NVML's energy "
            "counter updates coarsely, so energy is unreliable (use more --iters)"
        )
    if stats.energy_j is None:
        notes.append("NVML reported neither energy nor power for this GPU")
    if notes:
        stats.note = "; ".join(filter(None, [stats.note, *notes]))
    return stats


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None

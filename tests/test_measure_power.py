"""NVML sampling, on CPU: NVML absent, no GPU, and a fake NVML module standing in for a GPU."""

import builtins
import sys
import types

import pytest

from sasa_bench.measure import power
from sasa_bench.measure.power import PowerMonitor, load_nvml, nvml_index, throttle_reason_names


class FakeNVMLError(Exception):
    pass


def fake_nvml(*, energy_mj=(1_000_000, 1_004_000), power_mw=250_000, energy=True):
    """A pynvml stand-in: 250 W, 4 J over the region, one throttle reason, no SM clock."""
    readings = iter(energy_mj)
    nvml = types.SimpleNamespace(
        NVMLError=FakeNVMLError,
        NVML_CLOCK_SM=1,
        NVML_TEMPERATURE_GPU=0,
        nvmlClocksThrottleReasonGpuIdle=0x1,
        nvmlClocksThrottleReasonSwPowerCap=0x4,
        nvmlClocksThrottleReasonAll=0xFF,
        opened=[],
        shutdowns=[],
    )

    def unsupported(*_):
        raise FakeNVMLError("Not Supported")

    def total_energy(handle):
        if not energy:
            raise FakeNVMLError("Not Supported")
        return next(readings)

    nvml.nvmlInit = lambda: None
    nvml.nvmlShutdown = lambda: nvml.shutdowns.append(1)
    nvml.nvmlDeviceGetHandleByIndex = lambda i: nvml.opened.append(i) or f"gpu{i}"
    nvml.nvmlDeviceGetHandleByUUID = lambda u: nvml.opened.append(u) or u
    nvml.nvmlDeviceGetTotalEnergyConsumption = total_energy
    nvml.nvmlDeviceGetPowerUsage = lambda h: power_mw
    nvml.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=90, memory=40)
    nvml.nvmlDeviceGetClockInfo = unsupported
    nvml.nvmlDeviceGetTemperature = lambda h, sensor: 61
    nvml.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=3 * 2**30)
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x4
    return nvml


def test_no_gpu_says_so_and_leaves_the_fields_empty():
    with PowerMonitor("cpu") as monitor:
        pass
    stats = monitor.result(images=8)
    assert stats.energy_j is None and stats.joules_per_image is None
    assert stats.note.startswith("no GPU (device cpu)")


def test_nvml_absent_is_a_note_not_a_traceback(monkeypatch):
    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    assert load_nvml() == (None, "NVML unavailable: nvidia-ml-py is not installed")
    with PowerMonitor("cuda:0") as monitor:
        pass
    stats = monitor.result(images=8)
    assert stats.energy_j is None and stats.note.startswith("NVML unavailable")


def test_nvml_without_a_driver_is_a_note(monkeypatch):
    broken = types.SimpleNamespace(nvmlInit=lambda: (_ for _ in ()).throw(OSError("no driver")))
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    assert load_nvml() == (None, "NVML unavailable: no driver")


def test_fake_gpu_gives_energy_per_image_from_the_counter():
    nvml = fake_nvml()
    with PowerMonitor("cuda:1", interval_s=0.001, nvml=nvml) as monitor:
        pass
    stats = monitor.result(images=8)
    assert nvml.opened == [1] and stats.nvml_index == 1
    assert stats.energy_j == pytest.approx(4.0) and stats.energy_source == "total_energy_counter"
    assert stats.joules_per_image == pytest.approx(0.5)
    assert stats.power_mean_w == 250.0 and stats.power_max_w == 250.0
    assert stats.gpu_util_mean_pct == 90 and stats.memory_util_mean_pct == 40
    assert stats.sm_clock_mean_mhz is None  # unsupported query: empty, not an error
    assert stats.temperature_max_c == 61 and stats.device_memory_used_max_bytes == 3 * 2**30
    assert stats.throttle_reasons == ["SwPowerCap"]
    assert stats.nvml_samples >= 2
    assert "shorter than 1 s" in stats.note  # the coarse counter over a tiny region
    assert nvml.shutdowns == []  # not ours to shut down


def test_without_the_energy_counter_power_is_integrated():
    stats = power.summarize_samples(
        [{"t": 0.0, "power_w": 100.0}, {"t": 1.0, "power_w": 300.0}, {"t": 2.0, "power_w": 300.0}],
        energy_mj=[None, None],
        seconds=2.0,
        images=10,
        reasons={},
    )
    assert stats.energy_j == pytest.approx(200 + 300) and stats.energy_source == "power_integral"
    assert stats.joules_per_image == pytest.approx(50.0) and "integrated" in stats.note
    assert stats.power_max_w == 300.0


def test_nvml_index_follows_cuda_visible_devices():
    assert nvml_index(0, visible="") == 0
    assert nvml_index(1, visible="") == 1
    assert nvml_index(0, visible="3") == 3
    assert nvml_index(1, visible="2, 5") == 5
    assert nvml_index(0, visible="GPU-1234") == "GPU-1234"
    with pytest.raises(ValueError):
        nvml_index(2, visible="0,1")


def test_throttle_reason_names_decode_the_module_constants():
    names = throttle_reason_names(fake_nvml())
    assert names == {0x1: "GpuIdle", 0x4: "SwPowerCap"}
    import pynvml

    real = throttle_reason_names(pynvml)
    assert real[pynvml.nvmlClocksThrottleReasonSwPowerCap] == "SwPowerCap"

"""Peak memory of a region and of one call: what was allocated, never the machine's speed."""

import mmap

import torch

from sasa_bench.measure.memory import PeakMemory, step_peak_bytes

CPU = torch.device("cpu")


def test_peak_rss_is_reset_before_a_region_and_sees_what_it_allocates():
    memory = PeakMemory(CPU)
    memory.reset()
    before = memory.read()
    # 64 MiB of fresh pages, touched (a malloc'ed array could reuse memory already resident)
    block = mmap.mmap(-1, 64 * 2**20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    during = memory.read()
    block.close()  # the pages go back to the system
    assert during.peak_allocated_bytes is None and during.peak_reserved_bytes is None
    assert "RSS" in during.note and during.rss_scope in ("region", "process")
    # the kernel's RSS counters are approximate (per-thread caches): leave a few MiB of slack
    assert during.peak_rss_bytes - before.peak_rss_bytes >= 56 * 2**20
    if during.rss_scope == "region":  # Linux: the mark goes back down after a reset
        memory.reset()
        assert memory.read().peak_rss_bytes < during.peak_rss_bytes - 32 * 2**20


def test_peak_rss_falls_back_to_the_process_peak_where_it_cannot_reset(monkeypatch):
    monkeypatch.setattr("sasa_bench.measure.memory.reset_rss_peak", lambda: False)
    memory = PeakMemory(CPU)
    memory.reset()
    stats = memory.read()
    assert stats.rss_scope == "process" and "since the process started" in stats.note


def test_one_call_peak_counts_the_tensors_it_creates_and_nothing_before_it():
    kept = torch.ones(1024)  # allocated before the call: not counted

    def step() -> None:
        a = torch.ones(256, 256)  # 256 KiB, alive while b is made
        b = a * 2  # another 256 KiB
        del a, b

    peak, source = step_peak_bytes(step, CPU)
    assert source == "live-tensors"
    assert peak == 2 * 256 * 256 * 4
    assert kept.numel() == 1024

"""One measurement in this process: its record, out-of-memory retries, failures, BN restore."""

import dataclasses

import pytest
import torch

from sasa_bench.errors import SasaBenchError
from sasa_bench.measure import model as bench
from sasa_bench.measure.model import BenchConfig, measure, preserved_batchnorm
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import build_model
from sasa_bench.records import (
    SCHEMA_VERSION,
    append_record,
    load_records,
    retried_batch,
    to_dataframe,
)

TINY = BenchConfig(
    "resnet26:resolution=32", batch_size=2, warmup=1, iters=2, threads=1, max_time_s=0.0
)


@pytest.fixture(scope="module")
def infer_record():
    return measure(TINY)


def test_a_measurement_records_config_metrics_cost_and_environment(infer_record):
    record = infer_record
    assert record.kind == "bench" and record.status == "ok" and record.error is None
    assert record.model == "resnet26:resolution=32"
    config = record.config
    assert config["batch_size"] == 2 and config["resolution"] == 32
    assert (config["dtype"], config["layout"], config["compile"]) == ("fp32", "contiguous", False)
    assert config["attn_impl"] == "reference" and config["device"] == "cpu"
    m = record.metrics
    assert m["batch_size"] == 2 and m["oom_retries"] == 0 and m["oom_batch_sizes"] == []
    assert len(m["samples_ms"]) == 2 and m["timer"] == "thread-cpu" and m["threads"] == 1
    assert m["stopped_by"] in ("stable", "budget") and len(m["wall_samples_ms"]) == 2
    assert m["contention"]["threads"] == 1 and isinstance(m["reliable"], bool)
    assert m["median_ms"] == pytest.approx(sum(m["samples_ms"]) / 2)
    assert m["images_per_s"] == pytest.approx(2e3 / m["median_ms"])
    assert m["latency_ms"] == m["median_ms"] and m["min_ms"] <= m["median_ms"]
    assert m["forward_flops_per_s"] == pytest.approx(record.cost["flops"] * m["images_per_s"])
    assert m["peak_rss_bytes"] > 0 and m["peak_allocated_bytes"] is None
    assert m["energy_j"] is None and m["joules_per_image"] is None  # GPU fields empty ...
    assert any(note.startswith("no GPU") for note in m["notes"])  # ... with the reason
    env = record.env
    assert env["device"] == "cpu" and env["gpu_count"] == 0 and env["gpu"] is None
    assert {"host", "cpu", "torch", "cuda", "cudnn", "driver", "git_sha"} <= set(env)
    assert record.cost["flops"] == 2 * record.cost["macs"] and record.created


def test_a_record_round_trips_through_the_file_into_a_dataframe(infer_record, tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, infer_record)
    append_record(path, infer_record)
    loaded = load_records(path)
    assert loaded == [infer_record, infer_record]
    assert loaded[0].schema_version == SCHEMA_VERSION
    frame = to_dataframe(loaded)
    assert len(frame) == 2
    assert frame["metrics.images_per_s"].iloc[0] == infer_record.metrics["images_per_s"]
    assert {"config.batch_size", "config.dtype", "env.git_sha", "cost.flops"} <= set(frame.columns)


def test_train_mode_times_a_full_step_and_restores_batchnorm():
    config = BenchConfig("resnet26:resolution=32", mode="train", batch_size=2, warmup=0, iters=1)
    record = measure(config)
    assert record.status == "ok", record.error
    assert record.config["mode"] == "train" and record.metrics["images_per_s"] > 0
    assert any(note.startswith("no warm-up") for note in record.metrics["notes"])


def test_preserved_batchnorm_puts_the_running_statistics_back():
    model = build_model(parse_model("resnet26:resolution=32").spec).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    with preserved_batchnorm(model):
        model(torch.randn(2, 3, 32, 32))
        assert not torch.equal(model.stem.bn.running_mean, before["stem.bn.running_mean"])
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert int(after["stem.bn.num_batches_tracked"]) == 0


def oom_above(limit, calls):
    def fake(spec, config, batch):
        calls.append(batch)
        if batch > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"batch_size": batch, "images_per_s": 1.0}

    return fake


def test_out_of_memory_halves_the_batch_and_records_it(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "measure_once", oom_above(2, calls))
    record = measure(BenchConfig("resnet26:resolution=32", batch_size=8))
    assert calls == [8, 4, 2]
    assert record.status == "ok"
    assert record.config["batch_size"] == 8  # the asked batch stays the asked one
    assert record.metrics["batch_size"] == 2  # the measured one
    assert record.metrics["oom_batch_sizes"] == [8, 4] and record.metrics["oom_retries"] == 2
    assert retried_batch(record) == 2


def test_out_of_memory_at_batch_one_is_a_failed_record(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "measure_once", oom_above(0, calls))
    record = measure(BenchConfig("resnet26:resolution=32", batch_size=3))
    assert calls == [3, 1]
    assert record.status == "failed" and "out of memory" in record.error
    assert record.metrics["oom_batch_sizes"] == [3, 1]


#: what torch says when the CPU allocator fails (c10/core/impl/alloc_cpu.cpp), and Python's
CPU_OUT_OF_MEMORY = [
    RuntimeError(
        "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 25769803776 bytes. Error code 12 (Cannot allocate memory)"
    ),
    RuntimeError(
        "[enforce fail at alloc_cpu.cpp:114] data. DefaultCPUAllocator: not enough memory: you "
        "tried to allocate 25769803776 bytes."
    ),
    MemoryError(),
]


@pytest.mark.parametrize("error", CPU_OUT_OF_MEMORY, ids=["cant-allocate", "not-enough", "py"])
def test_cpu_out_of_memory_is_retried_at_half_the_batch_like_cuda(monkeypatch, error):
    calls = []

    def fake(spec, config, batch):
        calls.append(batch)
        if batch > 2:
            raise error
        return {"batch_size": batch, "images_per_s": 1.0}

    monkeypatch.setattr(bench, "measure_once", fake)
    record = measure(BenchConfig("resnet26:resolution=32", batch_size=8))
    assert calls == [8, 4, 2] and record.status == "ok"
    assert record.config["batch_size"] == 8 and record.metrics["batch_size"] == 2
    assert record.metrics["oom_batch_sizes"] == [8, 4] and record.metrics["oom_retries"] == 2
    assert retried_batch(record) == 2


def test_cpu_out_of_memory_at_every_batch_is_a_failed_record(monkeypatch):
    def fake(spec, config, batch):
        raise CPU_OUT_OF_MEMORY[0]

    monkeypatch.setattr(bench, "measure_once", fake)
    record = measure(BenchConfig("resnet26:resolution=32", batch_size=2))
    assert record.status == "failed" and "out of memory at every batch" in record.error
    assert record.metrics["oom_batch_sizes"] == [2, 1]


def test_other_errors_are_a_failed_record_not_an_exception(monkeypatch):
    def crash(spec, config, batch):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(bench, "measure_once", crash)
    record = measure(BenchConfig("resnet26:resolution=32", batch_size=4))
    assert record.status == "failed" and record.error == "RuntimeError: kernel exploded"
    assert record.metrics["oom_batch_sizes"] == [] and record.cost["params"] > 0


@pytest.mark.parametrize(
    "config, message",
    [
        (BenchConfig("resnet26", device="cuda"), "no GPU"),
        (BenchConfig("resnet26", device="tpu"), "device"),
        (BenchConfig("resnet26", dtype="bf16", amp=False, mode="fly"), "unknown mode"),
        (BenchConfig("resnet26", amp=True), "--amp needs"),
        (BenchConfig("resnet26", attn_impl="magic"), "unknown attention implementation"),
        (BenchConfig("resnet26", batch_size=0), "--batch-size must be >= 1, got 0"),
        (BenchConfig("resnet26", iters=0), "--iters must be >= 1, got 0"),
        (BenchConfig("resnet26", warmup=-1), "--warmup must be >= 0, got -1"),
        (BenchConfig("resnet26", threads=0), "--threads must be >= 1, got 0"),
        (BenchConfig("resnet26", instances=0), "--instances must be >= 1, got 0"),
        (BenchConfig("resnet26", max_time_s=float("nan")), "--max-time must be >= 0"),
        (BenchConfig("nosuchnet"), "unknown model"),
    ],
)
def test_bad_configs_are_user_errors(config, message):
    if torch.cuda.is_available() and config.device == "cuda":
        pytest.skip("this machine has a GPU")
    with pytest.raises(SasaBenchError, match=message):
        config.validate()


def test_the_fastest_fresh_instance_counts_only_where_a_second_confirms_it():
    from sasa_bench.measure.model import placement_reason

    assert placement_reason([48.0], "instances") is None  # one: nothing to confirm
    assert placement_reason([73.0, 48.0, 50.0], "instances") is None  # 50 is within 10 % of 48
    reason = placement_reason([48.0, 73.0, 75.0], "instances")
    assert reason.startswith("fresh instances disagree (medians 48.00, 73.00, 75.00 ms")
    assert "memory placement" in reason


def test_a_cpu_measurement_times_fresh_instances_and_reports_the_fastest():
    config = dataclasses.replace(TINY, instances=2)
    m = measure(config).metrics
    assert m["instances"] == 2 and len(m["instance_medians_ms"]) == 2
    assert m["median_ms"] == min(m["instance_medians_ms"])
    assert BenchConfig("resnet26").fresh_instances == 3  # CPU default
    assert BenchConfig("resnet26", device="cuda").fresh_instances == 1

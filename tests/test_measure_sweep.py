"""Sweeps: a subprocess per measurement, crashes and hangs recorded as failed rows, records
appended as they come, several GPUs. A fake worker (no torch import: fast) stands in for the
real one, except in one test that runs the real worker once."""

import json
import sys
import textwrap

from sasa_bench.measure.model import BenchConfig
from sasa_bench.measure.sweep import fastest_process, run_isolated, run_sweep
from sasa_bench.records import SCHEMA_VERSION, Record, load_records

FAKE_WORKER = textwrap.dedent(
    f"""
    import json, os, sys, time
    config = json.loads(sys.stdin.read())
    record = {{
        "kind": "bench", "model": config["model"], "status": "ok", "error": None,
        "config": config, "cost": {{}}, "created": "2025-01-01T00:00:00+00:00",
        "env": {{"device": config["device"], "cuda_visible_devices":
                 os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}},
        "metrics": {{"batch_size": config["batch_size"], "images_per_s": 1.0}},
        "schema_version": {SCHEMA_VERSION},
    }}
    model = config["model"]
    if model == "resnet38":  # dies after reporting its environment, as the real worker does
        placeholder = dict(record, status="failed", error="did not finish", metrics={{}})
        open(sys.argv[1], "w").write(json.dumps(placeholder))
        print("Fatal Python error: Segmentation fault", file=sys.stderr)
        os.abort()
    if model == "resnet50":
        time.sleep(60)
    if model == "resnet101":
        sys.exit(3)  # dies before writing anything
    open(sys.argv[1], "w").write(json.dumps(record))
    """
)


def fake_worker(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(FAKE_WORKER)
    return (sys.executable, str(script))


def configs(*models):
    return [BenchConfig(model) for model in models]


def test_a_crash_is_a_failed_row_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "r.jsonl"
    seen = []
    records = run_sweep(
        configs("resnet26", "resnet38", "resnet101", "sasa26"),
        out=out,
        worker=fake_worker(tmp_path),
        on_record=lambda config, record: seen.append(len(load_records(out))),
    )
    assert seen == [1, 2, 3, 4]  # each record was in the file as soon as it existed
    assert [r.model for r in records] == ["resnet26", "resnet38", "resnet101", "sasa26"]
    assert [r.status for r in records] == ["ok", "failed", "failed", "ok"]
    crashed = records[1]
    assert "signal SIGABRT" in crashed.error and "Segmentation fault" in crashed.error
    assert crashed.env["pid"]  # the environment the worker reported before dying is kept
    assert "exit code 3" in records[2].error and records[2].config["model"] == "resnet101"
    assert "died before reporting its environment" in records[2].env["note"]
    assert load_records(out) == records


def test_a_hang_is_stopped_by_the_per_measurement_timeout(tmp_path):
    record = run_isolated(BenchConfig("resnet50"), timeout_s=1.0, worker=fake_worker(tmp_path))
    assert record.status == "failed"
    assert record.error.startswith("timed out after 1 s")


def test_devices_spread_the_sweep_one_gpu_per_worker(tmp_path):
    models = ["resnet26", "sasa26", "resnet26:k=3", "sasa26:k=3"]
    records = run_sweep(
        [BenchConfig(m, device="cuda:0") for m in models],
        devices=[2, 5],
        worker=fake_worker(tmp_path),
    )
    assert sorted(r.model for r in records) == sorted(models)
    assert {r.env["cuda_visible_devices"] for r in records} <= {"2", "5"}
    assert all(r.config["device"] == "cuda:0" for r in records)  # each sees one GPU


def test_the_real_worker_measures_in_a_subprocess(tmp_path):
    config = BenchConfig("resnet26:resolution=32", batch_size=1, warmup=0, iters=1, threads=1)
    record = run_isolated(config, timeout_s=300)
    assert record.status == "ok", record.error
    assert record.config == config.to_dict()
    assert record.metrics["batch_size"] == 1 and record.env["torch_threads"] >= 1
    json.dumps(record.metrics)  # plain JSON all through


def process_record(median_ms, status="ok"):
    metrics = {"median_ms": median_ms, "reliable": True, "unreliable_reasons": [], "notes": []}
    return Record("bench", "sasa26", status=status, error=None if status == "ok" else "boom",
                  config={"instances": 1}, metrics=metrics)  # fmt: skip


def test_a_cpu_measurement_keeps_the_fastest_of_fresh_processes_where_a_second_confirms_it():
    config = BenchConfig("sasa26")
    best = fastest_process(config, [process_record(m) for m in (74.0, 47.0, 48.0)])
    assert best.metrics["median_ms"] == 47.0 and best.metrics["reliable"]
    assert best.metrics["process_medians_ms"] == [74.0, 47.0, 48.0]
    assert best.config == config.to_dict()  # the measurement asked, not one worker's
    lone = fastest_process(config, [process_record(m) for m in (47.0, 74.0, 75.0)])
    assert not lone.metrics["reliable"]
    assert "fresh processes disagree" in lone.metrics["unreliable_reasons"][0]
    crashed = fastest_process(config, [process_record(47.0), process_record(None, "failed")])
    assert crashed.status == "ok" and "1 of 2 processes failed: boom" in crashed.metrics["notes"]

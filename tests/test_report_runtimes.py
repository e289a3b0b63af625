"""A study whose bench plan names several runtimes: each entry measured in each, tabulated as
speed-ups over the first runtime and as ratios to a baseline entry in the same runtime."""

import pytest

from sasa_bench.records import Record
from sasa_bench.report.build import plan_work
from sasa_bench.report.render import entries_of, runtime_table
from sasa_bench.report.store import RecordStore, bench_config
from sasa_bench.report.study import Bench, Study, load_study

STUDY = Study(
    name="rt",
    title="RT",
    models=("resnet26", "sasa26"),
    bench=Bench("resolution=32", batch_size=1, runtimes=("eager", "onnxruntime")),
    baseline="resnet26",
)
SPEED = {("resnet26", "eager"): 100.0, ("resnet26", "onnxruntime"): 250.0,
         ("sasa26", "eager"): 20.0}  # fmt: skip


def test_each_entry_is_planned_once_per_runtime(tmp_path):
    store = RecordStore(tmp_path / "records.jsonl", [])
    planned = [(item.model, item.runtime) for kind, item in plan_work([STUDY], store, "cpu")]
    assert planned == [
        ("resnet26:resolution=32", "eager"), ("resnet26:resolution=32", "onnxruntime"),
        ("sasa26:resolution=32", "eager"), ("sasa26:resolution=32", "onnxruntime"),
    ]  # fmt: skip


def test_the_runtime_table_gives_speed_ups_and_ratios_to_the_baseline(tmp_path):
    store = RecordStore(tmp_path / "records.jsonl", [])
    for (model, runtime), speed in SPEED.items():
        config = bench_config(STUDY, model, "cpu", runtime=runtime)
        metrics = {"images_per_s": speed, "images_per_s_iqr": 1.0, "reliable": True}
        store.add(Record("bench", config.model, config=config.to_dict(), metrics=metrics))
    failed = bench_config(STUDY, "sasa26", "cpu", runtime="onnxruntime")
    store.add(Record("bench", failed.model, status="failed", config=failed.to_dict(),
                     error="export failed: no translation"))  # fmt: skip
    table = runtime_table(STUDY, entries_of(STUDY, store, "cpu"))
    assert table.headers[1:] == [
        "eager images/s (IQR)", "onnxruntime images/s (IQR)", "onnxruntime / eager",
        "resnet26 / model, eager", "resnet26 / model, onnxruntime",
    ]  # fmt: skip
    resnet, sasa = table.rows
    assert resnet[1:] == ["100.0 (IQR 1.0)", "250.0 (IQR 1.0)", "2.50", "1.00", "1.00"]
    assert sasa[1] == "20.0 (IQR 1.0)" and sasa[2] == "failed: export failed: no translation"
    assert sasa[3:] == ["-", "5.00", "-"]  # no speed, no ratio


def test_the_runtime_studies_load_in_both_sizes():
    for name in ("descendants", "runtimes"):
        for smoke in (True, False):
            study = load_study(name, smoke)
            assert len(study.bench.runtimes) > 1 and study.baseline in study.models
    assert load_study("descendants", True).counters


def test_a_report_needing_a_missing_runtime_says_so_before_any_work(monkeypatch, tmp_path):
    import sys

    from sasa_bench.errors import SasaBenchError
    from sasa_bench.report.build import build_report

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    out = tmp_path / "report"
    with pytest.raises(SasaBenchError, match=r"--runtime openvino.*pip install"):
        build_report(["runtimes"], smoke=True, out=out)
    assert not (out / "records.jsonl").exists()  # nothing measured

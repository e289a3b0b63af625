"""`sasa-bench bench` and `sasa-bench compare` from the command line."""

import argparse
import json

import pytest

from sasa_bench.cli import main
from sasa_bench.cli.bench import expand_models, runtime_lines
from sasa_bench.models.registry import PRESETS
from sasa_bench.records import Record, append_record, load_records


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def overrides(**given):
    names = ("stages", "stem", "k", "heads", "pos", "logits", "width", "resolution")
    return argparse.Namespace(**{n: given.get(n) for n in (*names, "num_classes")})


def test_model_patterns_match_the_registry_and_take_options_and_overrides():
    assert expand_models(["sasa*"], overrides()) == [n for n in PRESETS if n.startswith("sasa")]
    assert expand_models(["resnet2?", "resnet26"], overrides()) == ["resnet26"]
    assert expand_models(["sasa5*:k=9"], overrides(resolution=64)) == [
        "sasa50:k=9,resolution=64",
        "sasa50-full:k=9,resolution=64",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nomodel*"], "no model matches"),
        (["resnet26", "--amp"], "--amp needs"),
        (["resnet26", "--devices", "0,1"], "--devices spreads a sweep over GPUs"),
        (["resnet26", "--device", "cuda:7"], "no GPU|no cuda:7"),
    ],
)
def test_bench_user_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, "bench", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert any(part in err for part in message.split("|"))


def test_bench_in_process_json_and_file(capsys, tmp_path):
    out = tmp_path / "r.jsonl"
    argv = ["bench", "resnet26", "--resolution", "32", "--batch-sizes", "1,2", "--warmup", "0"]
    argv += ["--iters", "1", "--threads", "1", "--in-process", "--out", str(out), "--json"]
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0
    printed = json.loads(stdout)
    assert [r["config"]["batch_size"] for r in printed] == [1, 2]
    assert [r.metrics["batch_size"] for r in load_records(out)] == [1, 2]


@pytest.mark.slow
def test_a_two_model_two_batch_sweep_writes_four_records_and_compare_renders_them(capsys, tmp_path):
    out = tmp_path / "r.jsonl"
    code, stdout, _ = run_cli(
        capsys, "bench", "resnet26", "sasa26", "--batch-sizes", "1,2", "--resolution", "64",
        "--warmup", "1", "--iters", "3", "--max-time", "0.5", "--out", str(out),
    )  # fmt: skip
    assert code == 0 and "sasa26:resolution=64" in stdout and "no GPU" in stdout
    records = load_records(out)
    assert len(records) == 4 and all(r.status == "ok" for r in records)
    code, stdout, _ = run_cli(capsys, "compare", str(out))
    assert code == 0 and "resnet26:resolution=64" in stdout


def bench_record(model, *, device="cpu", dtype="fp32", batch=8, ips=100.0, **metrics):
    config = {"model": model, "mode": "infer", "batch_size": batch, "device": device}
    config |= {"dtype": dtype, "resolution": 224, "attn_impl": "reference", "layout": "contiguous"}
    metrics = {"batch_size": batch, "images_per_s": ips, "oom_batch_sizes": [], **metrics}
    return Record("bench", model, config=config, metrics=metrics, env={"gpu": None})


@pytest.fixture
def two_machines(tmp_path):
    cpu, gpu = tmp_path / "cpu.jsonl", tmp_path / "h100.jsonl"
    for model, ips in (("resnet50", 20.0), ("sasa50", 5.0)):
        append_record(cpu, bench_record(model, ips=ips))
    append_record(gpu, bench_record("resnet50", device="cuda:0", ips=3000.0))
    append_record(gpu, bench_record("resnet50", device="cuda:0", ips=2000.0))  # latest wins
    retried = bench_record("sasa50", device="cuda:0", ips=500.0, batch=4, oom_batch_sizes=[8])
    retried.config["batch_size"] = 8
    append_record(gpu, retried)
    append_record(gpu, Record("train", "sasa50"))  # other kinds are left out
    return cpu, gpu


def test_compare_by_file_puts_machines_side_by_side_with_ratios(capsys, two_machines):
    cpu, gpu = two_machines
    code, out, _ = run_cli(capsys, "compare", str(cpu), str(gpu), "--json")
    assert code == 0
    result = json.loads(out)
    assert result["columns"] == ["cpu.jsonl", "h100.jsonl"] and result["baseline"] == "cpu.jsonl"
    assert result["key_fields"] == ["model", "mode", "batch_size"]
    assert result["column_fields"]["h100.jsonl"]["device"] == "cuda:0"
    rows = {row["key"]["model"]: row for row in result["rows"]}
    assert rows["resnet50"]["values"] == {"cpu.jsonl": 20.0, "h100.jsonl": 2000.0}
    assert rows["resnet50"]["ratios"] == {"h100.jsonl": 100.0}
    assert rows["sasa50"]["flags"] == {"h100.jsonl": "OOM: batch 4"}  # never silently smaller


def test_compare_markdown_csv_and_table(capsys, two_machines):
    cpu, gpu = two_machines
    code, out, _ = run_cli(capsys, "compare", str(cpu), str(gpu), "--format", "markdown")
    assert code == 0
    lines = out.splitlines()
    assert (
        lines[0]
        == "| model | mode | batch_size | cpu.jsonl | h100.jsonl | h100.jsonl / cpu.jsonl |"
    )
    assert "| resnet50 | infer | 8 | 20 | 2000 | 100x |" in lines
    assert "| sasa50 | infer | 8 | 5 | 500 (OOM: batch 4) | 100x |" in lines
    code, out, _ = run_cli(capsys, "compare", str(cpu), str(gpu), "--format", "csv")
    assert out.splitlines()[1] == "resnet50,infer,8,20.0,2000.0,100x"
    code, out, _ = run_cli(capsys, "compare", str(cpu), str(gpu), "--baseline", "h100.jsonl")
    assert code == 0 and "ratios to h100.jsonl" in out and "0.01x" in out


def test_compare_by_a_config_field_in_one_file(capsys, tmp_path):
    path = tmp_path / "dtypes.jsonl"
    append_record(path, bench_record("sasa50", ips=10.0))
    append_record(path, bench_record("sasa50", dtype="bf16", ips=25.0))
    failed_config = {**bench_record("sasa50").config, "dtype": "fp16"}
    append_record(path, Record("bench", "sasa50", "failed", "boom", config=failed_config))
    code, out, _ = run_cli(capsys, "compare", str(path), "--by", "dtype", "--json")
    result = json.loads(out)
    assert result["columns"] == ["fp32", "bf16", "fp16"]
    (row,) = result["rows"]
    assert row["ratios"] == {"bf16": 2.5, "fp16": None} and row["flags"] == {"fp16": "failed"}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--by", "colour"], "cannot compare by 'colour'"),
        (["--metric", "speed"], "no record has the metric 'speed'"),
        (["--baseline", "x.jsonl"], "baseline 'x.jsonl' is not a column"),
    ],
)
def test_compare_user_errors(capsys, two_machines, argv, message):
    code, _, err = run_cli(capsys, "compare", *map(str, two_machines), *argv)
    assert code == 2 and message in err


def test_compare_marks_an_unreliable_measurement(tmp_path):
    from sasa_bench.report.compare import compare, load_labelled

    path = tmp_path / "busy.jsonl"
    append_record(path, bench_record("resnet50", ips=20.0))
    append_record(path, bench_record("sasa50", ips=5.0, reliable=False))
    rows = {r["key"]["model"]: r for r in compare(load_labelled([str(path)]), by="file").rows}
    assert rows["sasa50"]["flags"] == {"busy.jsonl": "unreliable"}
    assert rows["resnet50"]["flags"] == {}


def test_the_check_line_reads_old_records_checked_against_eager_and_new_ones():
    runtime = {"name": "openvino", "version": "2026.4.1", "provider": "CPU", "threads": 1}
    old = {"against": "eager", "tolerance": 1e-3, "relative_error": 4e-5, "passed": True}
    new = {**old, "against": "float64", "eager_error": 0.019, "allowed": 0.057}
    records = []
    for check in (old, new):
        record = bench_record("sasa26")
        record.config |= {"runtime": "openvino", "translation": "gather"}
        record.metrics |= {"runtime": runtime, "output_check": check}
        records.append(record)
    first, second = runtime_lines(records)
    assert "within 4e-05 of eager's (relative; allowed 0.001)" in first
    assert "of the float64 network's (relative; eager's 0.019, allowed 0.057)" in second

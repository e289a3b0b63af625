"""The baseline file: format, exact costs, and exit code 2 with one clear line when it is bad."""

import dataclasses
import json
from pathlib import Path

import pytest
from test_cli import run_cli  # the suite's CLI helper: exit code, stdout, stderr

from sasa_bench.cli.check import fraction
from sasa_bench.models import resnet
from sasa_bench.models.registry import PRESETS, parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.regression import default_baseline, load_baseline, save_baseline
from sasa_bench.regression.baseline import FORMAT, Baseline, Settings, SpeedCheck

COMMITTED = Path(__file__).resolve().parent.parent / ".ci" / "baseline-cpu.json"


@pytest.fixture
def costs_only(tmp_path, capsys) -> Path:
    """A baseline of the costs of two models, made by --update-baseline."""
    path = tmp_path / "costs.json"
    save_baseline(Baseline(Settings(), {"resnet26": {}, "sasa26-full": {}}), path)
    code, _, err = run_cli(capsys, "check", "--baseline", str(path), "--update-baseline")
    assert code == 0, err
    return path


def test_costs_are_stored_exactly_one_line_per_layer(costs_only):
    text = costs_only.read_text()
    raw = json.loads(text)
    assert raw["format"] == FORMAT and raw["version"] == 1
    assert raw["env"]["torch"] and raw["created"]
    cost = model_cost(parse_model("sasa26-full").spec)
    stored = raw["costs"]["sasa26-full"]
    assert (stored["params"], stored["macs"], stored["flops"]) == (
        cost.params,
        cost.macs,
        cost.flops,
    )
    assert len(stored["layers"]) == len(cost.layers)
    stem = cost.layers[0]
    line = f'"{stem.name}": [{stem.params}, {stem.macs}, {stem.flops}]'
    assert line in text.splitlines()[text.count("\n", 0, text.index(line))]


def test_unchanged_costs_pass(costs_only, capsys):
    code, out, _ = run_cli(capsys, "check", "--baseline", str(costs_only))
    assert code == 0
    assert "passed: 2 ok" in out


def test_a_parameter_count_changed_by_one_fails_exactly(costs_only, capsys):
    raw = json.loads(costs_only.read_text())
    raw["costs"]["resnet26"]["params"] += 1
    raw["costs"]["resnet26"]["layers"]["stages.1.0.conv1"][0] += 1
    costs_only.write_text(json.dumps(raw))
    code, out, _ = run_cli(capsys, "check", "--baseline", str(costs_only), "--json")
    assert code == 1
    found = {f["name"]: f for f in json.loads(out)["findings"] if f["status"] == "regression"}
    assert set(found) == {"resnet26 params", "resnet26 stages.1.0.conv1 params"}
    params = model_cost(parse_model("resnet26").spec).params
    assert (found["resnet26 params"]["old"], found["resnet26 params"]["new"]) == (
        params + 1,
        params,
    )


def test_a_changed_cost_function_fails_on_the_layer(costs_only, capsys, monkeypatch):
    real = resnet.linear_cost

    def one_more_parameter(*args, **kwargs):
        layer = real(*args, **kwargs)
        return dataclasses.replace(layer, params=layer.params + 1)

    monkeypatch.setattr(resnet, "linear_cost", one_more_parameter)
    code, out, _ = run_cli(capsys, "check", "--baseline", str(costs_only), "--json")
    assert code == 1
    names = sorted(f["name"] for f in json.loads(out)["findings"] if f["status"] == "regression")
    assert names == [
        "resnet26 fc params",
        "resnet26 params",
        "sasa26-full fc params",
        "sasa26-full params",
    ]


def test_committed_ci_baseline_holds_every_preset_and_a_kernel_ratio():
    baseline = load_baseline(COMMITTED)
    assert set(baseline.costs) == set(PRESETS)
    assert all(entry.get("layers") for entry in baseline.costs.values())
    kernels = [c for c in baseline.speed if c.a.startswith("attention:") and c.b == "conv3x3"]
    assert kernels and all(c.baseline is not None for c in baseline.speed)
    assert baseline.settings.device == "cpu" and baseline.settings.timer == "thread-cpu"
    assert baseline.env and baseline.env["device"] == "cpu"


def test_default_cpu_suite_matches_the_committed_checks():
    fresh = default_baseline("cpu")
    committed = load_baseline(COMMITTED)
    assert set(fresh.costs) == set(committed.costs)
    assert [dataclasses.replace(c, baseline=None) for c in committed.speed] == fresh.speed
    assert committed.settings == fresh.settings


def test_missing_baseline_exits_2_with_one_line(tmp_path, capsys):
    code, out, err = run_cli(capsys, "check", "--baseline", str(tmp_path / "nope.json"))
    assert code == 2
    assert err.strip().splitlines() == [
        f"sasa-bench check: error: no baseline file '{tmp_path / 'nope.json'}' "
        "(make one with --update-baseline)"
    ]
    assert not out


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda text: text[: len(text) // 2], "is not valid JSON"),
        (lambda text: "", "is not valid JSON"),
        (lambda text: "[1, 2]", "is not a sasa_bench baseline"),
        (lambda text: text.replace('"version": 1', '"version": 99'), "format version 99"),
        (lambda text: text.replace('"settings"', '"setings"'), "unknown key(s) setings"),
        (lambda text: text.replace('"tolerance": 0.1', '"tolerance": "10%"'), "'tolerance'"),
        (lambda text: text.replace('"a": "conv3x3"', '"a": "pool"'), "'pool' is not one of"),
        (lambda text: text.replace('"ratio": 1.0,', ""), "baseline: missing 'ratio'"),
    ],
)
def test_corrupt_baseline_exits_2_with_one_line(tmp_path, capsys, mangle, message):
    path = tmp_path / "b.json"
    check = SpeedCheck("c", "conv3x3", "conv3x3", shape=[4, 4, 8])
    check.baseline = {"ratio": 1.0, "ratio_samples": [1.0, 1.0], "a_ms": 1.0, "b_ms": 1.0}
    baseline = Baseline(Settings(), {}, [check])
    path.write_text(json.dumps(baseline.to_dict(), indent=2))
    path.write_text(mangle(path.read_text()))
    code, out, err = run_cli(capsys, "check", "--baseline", str(path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err + out


def test_binary_baseline_exits_2(tmp_path, capsys):
    path = tmp_path / "b.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run_cli(capsys, "check", "--baseline", str(path))
    assert code == 2 and "not a text file" in err


def test_check_without_baseline_values_exits_2(tmp_path, capsys):
    path = tmp_path / "b.json"
    save_baseline(Baseline(Settings(), {"resnet26": {}}), path)
    code, out, _ = run_cli(capsys, "check", "--baseline", str(path))
    assert code == 2
    assert "no baseline values: run --update-baseline" in out


@pytest.mark.parametrize("text, value", [("10%", 0.1), ("0.25", 0.25), ("50 %", 0.5)])
def test_tolerance_accepts_percent_or_fraction(text, value):
    assert fraction(text) == pytest.approx(value)


def test_bad_tolerance_is_a_usage_error(tmp_path, capsys):
    code, _, err = run_cli(capsys, "check", "--baseline", "x.json", "--tolerance", "ten")
    assert code == 2 and "not a tolerance" in err

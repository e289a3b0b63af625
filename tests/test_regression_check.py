"""`sasa-bench check` on a simulated machine: the timing loop, the statistics, the decision, the
report and the exit codes run for real; only the clock is simulated (timings in unit tests
would flake on a shared machine). Noise: every timed call is off by up to +-25 % (uniform),
and the whole run by up to +-25 % (a slower or faster machine, both sides alike)."""

import json
import random
from pathlib import Path

import pytest
from test_cli import run_cli  # the suite's CLI helper: exit code, stdout, stderr

from sasa_bench.records import Record, append_record
from sasa_bench.regression import measure
from sasa_bench.regression.baseline import Baseline, Settings, SpeedCheck, save_baseline
from sasa_bench.regression.measure import interleaved_times

#: simulated time of one call of each subject (ms)
BASE_MS = {
    "attention:reference": 5.0,
    "attention:triton": 0.8,
    "conv3x3": 0.3,
    "model:sasa26:resolution=32": 40.0,
    "model:resnet26:resolution=32": 16.0,
}


def checks() -> list[SpeedCheck]:
    return [
        SpeedCheck("reference-7x7x64", "attention:reference", "conv3x3", shape=[7, 7, 64]),
        SpeedCheck("triton-7x7x64", "attention:triton", "conv3x3", shape=[7, 7, 64]),
        SpeedCheck(
            "sasa26-over-resnet26",
            "model:sasa26:resolution=32",
            "model:resnet26:resolution=32",
        ),
    ]


class Step:
    def __init__(self, subject: str) -> None:
        self.subject = subject

    def __call__(self) -> None:
        pass


class SimulatedMachine:
    """Replaces the subjects' steps, the clock and the memory probe of sasa_bench.regression."""

    def __init__(self, seed: int, noise: float = 0.25, slowdown=None, peaks=None) -> None:
        self.rng = random.Random(seed)
        self.noise = noise
        self.slowdown = slowdown or {}
        self.peaks = peaks or {}
        self.run_factor = self.rng.uniform(1 - noise, 1 + noise)

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(measure, "build_step", lambda subject, *_: Step(subject))
        monkeypatch.setattr(measure, "_timer", lambda *_: self.time)
        monkeypatch.setattr(measure, "step_peak_bytes", self.peak)

    def time(self, step: Step, calls: int) -> list[float]:
        base = BASE_MS[step.subject] * self.slowdown.get(step.subject, 1.0) * self.run_factor
        return [base * self.rng.uniform(1 - self.noise, 1 + self.noise) for _ in range(calls)]

    def peak(self, step: Step, device) -> tuple[int, str]:
        return self.peaks.get(step.subject, 1000 * len(step.subject)), "simulated"


def make_baseline(tmp_path, monkeypatch, capsys, *, noise=0.25, **settings) -> str:
    path = tmp_path / "baseline.json"
    save_baseline(Baseline(Settings(**settings), {"resnet26": {}, "sasa26": {}}, checks()), path)
    SimulatedMachine(0, noise).install(monkeypatch)
    code, out, err = run_cli(capsys, "check", "--baseline", str(path), "--update-baseline")
    assert code == 0, err
    return str(path)


def check_json(capsys, path, *extra):
    code, out, err = run_cli(capsys, "check", "--baseline", path, "--json", *extra)
    return code, json.loads(out), err


def regressions(report) -> list[str]:
    return [f["name"] for f in report["findings"] if f["status"] == "regression"]


def test_unchanged_code_under_noise_passes_20_of_20(tmp_path, monkeypatch, capsys):
    path = make_baseline(tmp_path, monkeypatch, capsys)
    for seed in range(1, 21):
        SimulatedMachine(seed).install(monkeypatch)
        code, report, _ = check_json(capsys, path)
        assert code == 0, (seed, regressions(report))
        speed = [f for f in report["findings"] if f["kind"] == "speed"]
        assert len(speed) == 3 and all(f["status"] == "ok" for f in speed)


def test_a_2x_slower_kernel_fails_under_noise_20_of_20(tmp_path, monkeypatch, capsys):
    path = make_baseline(tmp_path, monkeypatch, capsys)
    for seed in range(1, 21):
        SimulatedMachine(seed, slowdown={"attention:triton": 2.0}).install(monkeypatch)
        code, report, _ = check_json(capsys, path)
        assert code == 1
        assert regressions(report) == ["triton-7x7x64"]
        (found,) = [f for f in report["findings"] if f["status"] == "regression"]
        assert found["change"] == pytest.approx(2.0, rel=0.15)
        assert found["p_value"] < 1e-4 and found["old"] and found["new"]


def test_slowdown_is_named_in_the_table_and_the_markdown(tmp_path, monkeypatch, capsys):
    path = make_baseline(tmp_path, monkeypatch, capsys)
    SimulatedMachine(7, slowdown={"attention:reference": 2.0}).install(monkeypatch)
    summary = tmp_path / "summary.md"
    code, out, _ = run_cli(capsys, "check", "--baseline", path, "--markdown", str(summary))
    assert code == 1
    line = next(line for line in out.splitlines() if "REGRESSION" in line and "reference" in line)
    cells = [cell.strip() for cell in line.split("│")]
    assert cells[3] == "reference-7x7x64"
    assert float(cells[6].removeprefix("x")) == pytest.approx(2.0, rel=0.15)  # change
    assert float(cells[7]) < 1e-4  # p-value
    assert "REGRESSION: 1 regression" in out
    text = summary.read_text()
    assert text.startswith("## :x: sasa-bench check: REGRESSION")
    assert "| REGRESSION | speed | reference-7x7x64 |" in text


def test_a_small_slowdown_within_the_tolerance_passes(tmp_path, monkeypatch, capsys):
    path = make_baseline(tmp_path, monkeypatch, capsys, noise=0.02)
    SimulatedMachine(3, noise=0.02, slowdown={"attention:reference": 1.05}).install(monkeypatch)
    code, report, _ = check_json(capsys, path)
    assert code == 0
    SimulatedMachine(3, noise=0.02, slowdown={"attention:reference": 1.05}).install(monkeypatch)
    code, report, _ = check_json(capsys, path, "--tolerance", "2%")
    assert code == 1 and regressions(report) == ["reference-7x7x64"]


def test_a_faster_kernel_is_reported_not_failed(tmp_path, monkeypatch, capsys):
    path = make_baseline(tmp_path, monkeypatch, capsys)
    SimulatedMachine(5, slowdown={"attention:triton": 0.5}).install(monkeypatch)
    code, report, _ = check_json(capsys, path)
    assert code == 0
    statuses = {f["name"]: f["status"] for f in report["findings"] if f["kind"] == "speed"}
    assert statuses["triton-7x7x64"] == "improved"


def test_memory_growth_fails_and_another_torch_compares_ratios_only(tmp_path, monkeypatch, capsys):
    path = make_baseline(tmp_path, monkeypatch, capsys)
    grown = {"attention:triton": 2000 * len("attention:triton")}
    SimulatedMachine(1, peaks=grown).install(monkeypatch)
    code, report, _ = check_json(capsys, path)
    assert code == 1 and regressions(report) == ["triton-7x7x64 attention:triton"]

    raw = json.loads(Path(path).read_text())
    raw["env"]["torch"] = "1.0.0"
    Path(path).write_text(json.dumps(raw))
    SimulatedMachine(1, peaks=grown).install(monkeypatch)
    code, report, err = check_json(capsys, path)
    assert code == 0
    assert "compared on ratios only" in err and "torch '1.0.0'" in err
    memory = [f for f in report["findings"] if f["kind"] == "memory"]
    assert memory and all(f["status"] == "skipped" for f in memory)


def test_interleaving_alternates_the_order():
    calls = []

    def timer(step, n):
        calls.append(step)
        return [1.0] * n

    a_ms, b_ms = interleaved_times("a", "b", timer, repeats=4, inner=3)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert a_ms == b_ms == [1.0] * 4


def bench_record(model: str, samples: list[float], peak: int) -> Record:
    return Record(
        "bench",
        model,
        config={"mode": "infer", "batch_size": 1, "dtype": "fp32", "attn_impl": "reference"},
        metrics={
            "batch_size": 1,
            "samples_ms": samples,
            "median_ms": sorted(samples)[len(samples) // 2],
            "peak_allocated_bytes": None,
            "peak_rss_bytes": peak,
        },
    )


def test_model_pairs_from_bench_records(tmp_path, capsys):
    rng = random.Random(0)
    path = tmp_path / "baseline.json"
    pair = checks()[2]
    save_baseline(Baseline(Settings(), {}, [pair]), path)

    def records(file, slowdown):
        for model, base in (
            ("sasa26:resolution=32", 40 * slowdown),
            ("resnet26:resolution=32", 16),
        ):
            samples = [base * rng.uniform(0.75, 1.25) for _ in range(20)]
            append_record(file, bench_record(model, samples, 10**8))

    records(tmp_path / "old.jsonl", 1.0)
    code, _, err = run_cli(
        capsys,
        "check",
        "--baseline",
        str(path),
        "--update-baseline",
        "--results",
        str(tmp_path / "old.jsonl"),
    )
    assert code == 0, err
    records(tmp_path / "same.jsonl", 1.0)
    code, report, _ = check_json(capsys, str(path), "--results", str(tmp_path / "same.jsonl"))
    assert code == 0
    records(tmp_path / "slow.jsonl", 2.0)
    code, report, _ = check_json(capsys, str(path), "--results", str(tmp_path / "slow.jsonl"))
    assert code == 1 and regressions(report) == ["sasa26-over-resnet26"]


def test_kernel_checks_cannot_come_from_records(tmp_path, monkeypatch, capsys):
    path = make_baseline(tmp_path, monkeypatch, capsys)
    append_record(tmp_path / "r.jsonl", bench_record("resnet26", [1.0, 1.0], 1))
    code, report, _ = check_json(capsys, path, "--results", str(tmp_path / "r.jsonl"))
    assert code == 2
    errors = {f["name"]: f["note"] for f in report["findings"] if f["status"] == "error"}
    assert "needs a live run" in errors["reference-7x7x64"]
    assert "no ok record of sasa26:resolution=32" in errors["sasa26-over-resnet26"]

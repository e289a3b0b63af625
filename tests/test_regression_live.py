"""`sasa-bench check` measuring for real on this machine: a re-run of the same code passes.

It cannot flake on a busy machine: CPU time of one thread (preemption does not count), ratios
measured side by side, and a regression needs the median ratio to double (tolerance 100 %)
*and* p < 0.001 (8 repeats: a complete separation gives p = 1/12870, so a real doubling would
fail it). Memory and costs are deterministic and compared exactly as in CI.
"""

import json

from test_cli import run_cli  # the suite's CLI helper: exit code, stdout, stderr

from sasa_bench.regression.baseline import Baseline, Settings, SpeedCheck, save_baseline

SETTINGS = Settings(threads=1, timer="thread-cpu", tolerance=1.0, repeats=8, inner=3, warmup=2)
CHECKS = [
    SpeedCheck("reference-7x7x64", "attention:reference", "conv3x3", shape=[7, 7, 64], batch=2),
    SpeedCheck(
        "sasa26-over-resnet26",
        "model:sasa26:resolution=32",
        "model:resnet26:resolution=32",
    ),
]


def test_a_real_rerun_of_the_same_code_passes(tmp_path, capsys):
    path = tmp_path / "baseline.json"
    save_baseline(Baseline(SETTINGS, {"resnet26": {}}, CHECKS), path)
    code, _, err = run_cli(capsys, "check", "--baseline", str(path), "--update-baseline")
    assert code == 0, err
    stored = json.loads(path.read_text())["speed"]
    assert stored[0]["baseline"]["ratio"] > 1  # the reference loop is slower than a 3x3 conv
    assert stored[0]["baseline"]["memory_source"] == "live-tensors"

    code, out, err = run_cli(capsys, "check", "--baseline", str(path), "--json")
    report = json.loads(out)
    assert code == 0, report["findings"]
    assert report["counts"] == {"ok": 1 + 2 + 4}  # costs, two ratios, four peaks
    memory = [f for f in report["findings"] if f["kind"] == "memory"]
    assert all(f["old"] == f["new"] > 0 for f in memory)  # deterministic on one stack
    assert not report["warnings"]

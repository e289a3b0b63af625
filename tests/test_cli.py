import json
import subprocess
import sys

import pytest

from sasa_bench.cli import main
from sasa_bench.cli.common import say
from sasa_bench.models.registry import PRESETS, parse_model
from sasa_bench.models.resnet import model_cost


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_models_json_lists_every_preset_with_its_cost(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    rows = {row["model"]: row for row in json.loads(out)}
    assert set(rows) == set(PRESETS)
    assert rows["resnet50"]["params"] == 25_557_032
    assert rows["sasa50"]["flops"] == 2 * rows["sasa50"]["macs"]
    assert rows["sasa50"]["paper"] == {"table": "1", "flops_b": 7.0, "params_m": 18.0, "top1": 77.4}
    assert rows["sasa101"]["paper"] is None


def test_models_table(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert "sasa50-full" in out and "18.04" in out and "6.97" in out


def test_profile_json_has_totals_and_layers(capsys):
    code, out, _ = run_cli(capsys, "profile", "sasa50", "--stages", "ccaa", "--k", "9", "--json")
    assert code == 0
    result = json.loads(out)
    cost = model_cost(parse_model("sasa50:stages=ccaa,k=9").spec)
    assert result["model"] == "sasa50:k=9,stages=ccaa"
    assert (result["params"], result["macs"], result["flops"]) == (
        cost.params,
        cost.macs,
        cost.flops,
    )
    assert sum(layer["params"] for layer in result["layers"]) == cost.params
    assert {"name", "type", "params", "macs"} <= set(result["layers"][0])
    mixers = [layer for layer in result["layers"] if layer["name"].endswith("mixer")]
    assert [m["type"] for m in mixers][:3] == ["conv"] * 3 and mixers[-1]["type"] == "sasa"


def test_profile_paper_shows_ours_beside_the_paper(capsys):
    code, out, _ = run_cli(capsys, "profile", "sasa50", "--paper")
    assert code == 0
    line = next(line for line in out.splitlines() if "ResNet-50 Conv-stem + Attention" in line)
    assert "6.97" in line and "7.0" in line and "18.04" in line and "18.0" in line


def test_profile_groups_by_stage(capsys):
    code, out, _ = run_cli(capsys, "profile", "resnet26", "--group", "stage", "--json")
    names = [row["name"] for row in json.loads(out)["layers"]]
    assert names == ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "fc"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["profile", "sasa05"], "did you mean sasa50"),
        (["profile", "sasa50", "--stages", "ccx"], "4 letters"),
        (["profile", "sasa50", "--stages", "ccacc"], "4 letters"),
        (["profile", "sasa50", "--k", "4"], "odd"),
        (["profile", "sasa50", "--width", "0"], "--width: must be > 0"),
        (["profile", "sasa50", "--resolution", "8"], "too small"),
        (["profile", "sasa50", "--k", "x"], "invalid int value"),
        (["profile", "sasa50", "--pos", "learned"], "invalid choice"),
        (["profile"], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err + out


def test_console_entry_point_runs_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "sasa_bench", "profile", "nosuchmodel"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown model 'nosuchmodel'" in proc.stderr and "Traceback" not in proc.stderr


def test_profile_latency_adds_measured_columns(capsys):
    code, out, _ = run_cli(
        capsys, "profile", "sasa26", "--resolution", "32", "--group", "stage", "--latency", "--json"
    )
    assert code == 0
    rows = json.loads(out)["layers"]
    assert all(row["time_ms"] > 0 for row in rows)
    assert sum(row["time_share"] for row in rows) == pytest.approx(1.0)
    fc = rows[-1]
    assert fc["flops_per_s"] == pytest.approx(fc["flops"] / (fc["time_ms"] / 1e3))


def test_the_command_table_names_every_command_module():
    import importlib
    import pkgutil

    import sasa_bench.cli as cli

    modules = {
        info.name
        for info in pkgutil.iter_modules(cli.__path__)
        if hasattr(mod := importlib.import_module(f"sasa_bench.cli.{info.name}"), "add_parser")
        and hasattr(mod, "run")
    }
    assert set(cli.COMMANDS) == modules


@pytest.mark.parametrize("argv", [["--help"], ["bogus"], []])
def test_help_and_a_mistyped_command_import_no_torch(argv):
    """`sasa-bench --help` answers before torch, pandas or matplotlib is imported (their import
    takes seconds); a command imports them only when it is named."""
    code = (
        "import sys\nfrom sasa_bench.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'pandas', 'matplotlib'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


class Writes:
    def __init__(self):
        self.writes, self.flushed = [], 0

    def write(self, text):
        self.writes.append(text)

    def flush(self):
        self.flushed += 1


def test_a_progress_line_is_one_write_so_a_ctrl_c_cannot_split_it_from_its_newline():
    stream = Writes()
    say("epoch 1/3  train loss 2.1", stream)
    assert stream.writes == ["epoch 1/3  train loss 2.1\n"] and stream.flushed == 1

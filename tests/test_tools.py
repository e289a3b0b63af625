"""The scripts under tools/: the import-graph check of the layout, the GPU comparison's verdicts."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


import_graph = load_tool("import_graph")


def test_the_package_has_no_import_cycle_and_every_import_runs_down(capsys):
    code = import_graph.main([])
    out = capsys.readouterr().out
    assert "module cycles: 0" in out and "imports against the stage order: 0" in out, out
    assert "stages outside the stage order: none" in out and code == 0


@pytest.mark.parametrize("stage", ["kernels", "layers"])
def test_kernels_and_layers_import_nothing_that_times_measures_trains_or_reports(stage):
    edges = import_graph.graph(TOOLS.parent / "sasa_bench")
    above = {"measure", "train", "regression", "report", "cli", "counters"}
    stage_of = import_graph.stage
    reached = {stage_of(t) for m, ts in edges.items() if stage_of(m) == stage for t in ts}
    assert not reached & above, reached


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "sasa_bench"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return package


def test_a_cycle_an_upward_import_and_an_unplaced_stage_are_each_found(tmp_path, capsys):
    package = write_package(
        tmp_path,
        {
            "kernels/__init__.py": "",
            "kernels/a.py": "from sasa_bench.kernels import b\n",
            "kernels/b.py": "def f():\n    from sasa_bench.kernels.a import x\n",
            "layers/__init__.py": "",
            "layers/sasa.py": "from sasa_bench.measure.timing import t\n",
            "measure/__init__.py": "",
            "measure/timing.py": "",
            "analysis.py": "",
        },
    )
    assert import_graph.main(["--root", str(package)]) == 1
    out = capsys.readouterr().out
    assert "sasa_bench.kernels.a <-> sasa_bench.kernels.b" in out  # an import inside a function
    assert "sasa_bench.layers.sasa -> sasa_bench.measure.timing" in out
    assert "stages outside the stage order: analysis" in out


def test_gpu_script_states_the_kernel_targets_from_the_records():
    """tools/gpu_resnet50_vs_sasa50.py's verdicts: sasa50 / resnet50 per mode, from records only."""
    gpu_bench = load_tool("gpu_resnet50_vs_sasa50")

    def record(model, mode, rate, peak, impl="reference", status="ok"):
        metrics = {"images_per_s": rate, "peak_allocated_bytes": peak}
        config = {"mode": mode, "attn_impl": impl}
        return SimpleNamespace(model=model, status=status, config=config, metrics=metrics)

    records = [
        record("resnet50", "infer", 1000.0, 100),
        record("resnet50", "train", 300.0, 200),
        record("sasa50", "infer", 600.0, 160, "triton"),  # 0.6x: met; memory 1.6x: not
        record("sasa50", "train", 90.0, 250, "triton"),  # 0.3x: not met; memory 1.25x: met
        record("sasa50", "infer", 10.0, 1, "reference", status="error"),
    ]
    lines = gpu_bench.targets(records, ["resnet50", "sasa50"])
    body = "\n".join(lines[1:])
    assert "reference" not in body  # a failed measurement gives no ratio
    assert [line.split()[:3] for line in lines[1:]] == [
        ["triton", "infer", "images_per_s"],
        ["triton", "train", "images_per_s"],
        ["triton", "infer", "peak_allocated_bytes"],
        ["triton", "train", "peak_allocated_bytes"],
    ]
    verdicts = [line.rsplit(":", 1)[1].strip() for line in lines[1:]]
    assert verdicts == ["met", "NOT met", "NOT met", "met"]
    assert "0.600x" in lines[1] and "0.300x" in lines[2] and "1.600x" in lines[3]

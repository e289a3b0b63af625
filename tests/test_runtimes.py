"""`bench --runtime`: the ONNX translations of the attention op, export and its cache, the output
check against the float64 network, ONNX Runtime and OpenVINO, and the refusals before any work."""

import json
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from test_cli import run_cli  # the suite's CLI helper: exit code, stdout, stderr
from torch import nn

from sasa_bench.cli.bench import add_parser as add_bench_parser
from sasa_bench.cli.bench import configs_from_args
from sasa_bench.kernels import reference, window_attention
from sasa_bench.kernels.onnx import DEFAULT, TRANSLATIONS
from sasa_bench.kernels.verify import CPU_CASES, THRESHOLDS, Case
from sasa_bench.measure import export as export_module
from sasa_bench.measure.export import MODEL_FILE, export_onnx
from sasa_bench.measure.model import BenchConfig, measure, prepare
from sasa_bench.measure.runtimes import (
    LOADERS,
    OutputMismatch,
    check_outputs,
    float64_output,
    providers,
)

for _module in ("onnx", "onnxscript", "onnxruntime", "openvino"):
    pytest.importorskip(_module, reason="the runtimes extra: pip install 'sasa-bench[runtimes]'")
RUNTIMES = ("onnxruntime", "openvino")
#: the kernel check's cases that cover each branch of a translation: both borders, a window
#: larger than the image, q.r only, q.k only at d = 8, the 1/sqrt(d) scale, no logits at all
CASES = (
    CPU_CASES[0],  # 2x16x5x7, k 3, q.k + q.r, zero padding
    CPU_CASES[8],  # 4x4 map, k 7, mask, scaled
    CPU_CASES[9],  # q.r only, mask, scaled
    replace(CPU_CASES[11], rel=False),  # d = 8, k 5, q.k only, mask, scaled
    Case(keys=False, rel=False),  # uniform windows
)
#: the decomposition is the unfold backend (checked against float64 by tests/test_kernels.py)
#: through the exporter's aten library: both borders are enough
CHECKED = [(t, case) for t in TRANSLATIONS for case in CASES if t != "aten-unfold"] + [
    ("aten-unfold", CASES[0]),
    ("aten-unfold", CASES[2]),
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One export cache for the module: a model exported by one test is read by the next."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("cache")
        patch.setenv(export_module.CACHE_ENV, str(folder))
        yield folder / "onnx"


class Core(nn.Module):
    """The attention op alone: q, (k,) v as channel slices of one input, as SASA2d has them."""

    def __init__(self, case: Case, rel: torch.Tensor | None) -> None:
        super().__init__()
        self.case = case
        self.rel = None if rel is None else nn.Parameter(rel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.case
        parts = x.split(c.channels, dim=1)
        k = parts[1] if c.keys else None
        return window_attention(
            parts[0], k, parts[-1], self.rel, c.kernel_size, c.heads, "reference", c.padding,
            c.scale,
        )  # fmt: skip


def run_in(runtime: str, path: str):
    run, _ = LOADERS[runtime](path, runtime, "cpu", 1, "fp32")
    return run


@pytest.mark.parametrize(
    "translation, case", CHECKED, ids=[f"{t}-{case.label()}" for t, case in CHECKED]
)
def test_each_translation_is_exact_against_the_float64_reference(cache, translation, case):
    generator = torch.Generator().manual_seed(0)
    d = case.channels // case.heads
    parts = 2 + case.keys
    x = torch.randn(3, parts * case.channels, case.height, case.width, generator=generator)
    rel = torch.randn(case.heads, d, case.kernel_size**2, generator=generator) if case.rel else None
    core = Core(case, rel).eval()
    exported = export_onnx(
        core, x, name=f"core-{case.label()}", dtype="fp32", translation=translation
    )
    got = run_in("onnxruntime", exported.path)(x.numpy())  # batch 3: the export traced 2
    q, *kv = x.double().split(case.channels, dim=1)
    k = kv[0] if case.keys else None
    want, _ = reference.attention(
        q, k, kv[-1], None if rel is None else rel.double(), case.kernel_size, case.heads,
        case.padding, case.scale,
    )  # fmt: skip
    error = np.abs(got - want.numpy()).max() / np.abs(want.numpy()).max()
    assert error < THRESHOLDS[torch.float32], (translation, case.label(), error)


def _config(model: str, runtime: str, **options) -> BenchConfig:
    settings = {"batch_size": 1, "warmup": 1, "iters": 2, "max_time_s": 0.0, "instances": 1}
    return BenchConfig(model, runtime=runtime, **(settings | options)).validate()


MODELS = ("resnet26:resolution=32", "sasa26:resolution=32")


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_models_export_once_and_pass_the_output_check_in_both_runtimes(cache, model):
    records = [measure(_config(model, runtime)) for runtime in RUNTIMES]
    for runtime, record in zip(RUNTIMES, records, strict=True):
        assert record.status == "ok", record.error
        described, check = record.metrics["runtime"], record.metrics["output_check"]
        module = pytest.importorskip(runtime)
        assert described["name"] == runtime and described["version"] == module.__version__
        assert described["threads"] == 1 and record.metrics["timer"] == "thread-cpu"
        assert described["provider"] == {"onnxruntime": "CPUExecutionProvider"}.get(runtime, "CPU")
        assert described["translation"] == (DEFAULT if model.startswith("sasa") else None)
        assert check["passed"] and 0 < check["relative_error"] < check["tolerance"]
        assert check["against"] == "float64" and 0 < check["eager_error"] < check["tolerance"]
        assert record.env["runtime"]["version"] == module.__version__
    # one export serves both runtimes (and the other tests): the second read it
    exports = [record.metrics["runtime"]["export"] for record in records]
    assert [e["cached"] for e in exports] == [False, True]
    assert exports[0]["path"] == exports[1]["path"] and exports[0]["export_s"] > 0


@pytest.mark.slow
def test_the_dynamic_batch_dimension_runs_batch_1_and_3(cache):
    config = _config(MODELS[1], "onnxruntime")
    model, inputs = prepare(config.spec, config, 2, torch.device("cpu"))
    model.eval()
    path = export_onnx(model, inputs, name=config.model, dtype="fp32", translation=DEFAULT).path
    for runtime in RUNTIMES:
        run = run_in(runtime, path)
        for batch in (1, 3):
            x = torch.randn(batch, 3, 32, 32)
            with torch.inference_mode():
                eager = model(x)
            exact = float64_output(model, x)
            check = check_outputs(run(x.numpy()), eager, exact, dtype="fp32", runtime=runtime)
            assert check["passed"]


def test_the_export_cache_is_read_without_exporting_again(cache, monkeypatch):
    config = _config(MODELS[0], "onnxruntime")
    first = measure(config)  # exports, unless an earlier test did
    before = sorted(p.name for p in cache.iterdir())

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(export_module, "_export", no_export)
    record = measure(config)  # another fresh instance: the same model, shape and weights
    assert record.status == "ok" and record.metrics["runtime"]["export"]["cached"]
    assert record.metrics["runtime"]["export"]["path"] == first.metrics["runtime"]["export"]["path"]
    assert sorted(p.name for p in cache.iterdir()) == before


def test_other_weights_are_another_file(cache):
    case = CASES[0]
    x = torch.randn(2, 3 * case.channels, case.height, case.width)
    rel = torch.randn(case.heads, case.channels // case.heads, case.kernel_size**2)
    first, again, other = (
        export_onnx(Core(case, table), x, name="core", dtype="fp32", translation=DEFAULT)
        for table in (rel, rel.clone(), rel + 1)
    )
    assert not first.cached and again.cached and again.path == first.path
    assert not other.cached and other.path != first.path


def test_the_check_measures_from_float64_and_allows_a_multiple_of_eagers_own_error():
    exact = torch.tensor([[100.0, -50.0, 0.0]], dtype=torch.float64)
    eager = exact + torch.tensor([[2.0, 0.0, 0.0]])  # eager's fp32 is 2 % off
    near = exact + torch.tensor([[0.0, 0.05, 0.0]])  # closer than eager: passes
    check = check_outputs(near.numpy(), eager, exact, dtype="fp32", runtime="openvino")
    assert check["passed"] and check["eager_error"] == pytest.approx(0.02)
    assert check["relative_error"] == pytest.approx(5e-4)
    assert check["allowed"] == pytest.approx(0.06)
    far = exact + torch.tensor([[0.0, 0.0, 7.0]])  # 7 %: over 3 x eager's 2 %
    with pytest.raises(OutputMismatch, match=r"relative 0.07; eager's 0.02; 0.06 allowed"):
        check_outputs(far.numpy(), eager, exact, dtype="fp32", runtime="openvino")
    # where eager is exact, the floor holds: 1e-3 in fp32
    with pytest.raises(OutputMismatch, match="0.001 allowed for fp32"):
        check_outputs(near.numpy() * 1.002, exact, exact, dtype="fp32", runtime="onnxruntime")


def test_an_output_that_differs_from_eager_is_a_failed_row_with_the_max_error(cache, tmp_path):
    import onnx
    from onnx import numpy_helper

    config = _config(MODELS[0], "openvino")
    exported = measure(config).metrics["runtime"]["export"]
    # the same cache entry, in another cache, with the classifier's weights doubled
    folder = tmp_path / "onnx" / exported["key"]
    folder.mkdir(parents=True)
    for item in (cache / exported["key"]).iterdir():
        (folder / item.name).write_bytes(item.read_bytes())
    graph = onnx.load(str(folder / MODEL_FILE))
    (weight,) = [t for t in graph.graph.initializer if t.name == "fc.weight"]
    weight.CopyFrom(numpy_helper.from_array(2 * numpy_helper.to_array(weight), weight.name))
    onnx.save(graph, str(folder / MODEL_FILE))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(export_module.CACHE_ENV, str(tmp_path))
        record = measure(config)
    assert record.status == "failed" and "median_ms" not in record.metrics
    assert record.error.startswith("OutputMismatch: openvino output is off the float64 network")
    check = record.metrics["output_check"]
    assert not check["passed"] and check["max_abs_error"] > 0.01 and check["relative_error"] > 0.01


def test_an_export_that_fails_is_a_failed_row_with_the_reason(cache, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no ONNX function for aten::foo\n  long exporter trace\n  ...")

    monkeypatch.setattr(export_module, "_export", refuse)
    record = measure(_config(MODELS[1], "onnxruntime", translation="loop"))
    assert record.status == "failed" and "\n" not in record.error
    assert record.error == (
        "ExportFailed: torch.onnx.export of sasa26:resolution=32 (translation loop) failed: "
        "RuntimeError: no ONNX function for aten::foo"
    )


@pytest.mark.parametrize(
    "missing, runtime",
    [("onnxruntime", "onnxruntime"), ("openvino", "openvino"), ("onnxscript", "openvino")],
)
def test_a_missing_package_is_one_line_with_the_install_command(
    capsys, monkeypatch, tmp_path, missing, runtime
):
    monkeypatch.setitem(sys.modules, missing, None)  # import raises ImportError
    out = tmp_path / "r.jsonl"
    code, stdout, err = run_cli(
        capsys, "bench", "resnet26", "--runtime", runtime, "--out", str(out)
    )
    assert code == 2 and stdout == "" and not out.exists()
    assert err.splitlines() == [
        f"sasa-bench bench: error: --runtime {runtime}: {missing} is not installed "
        "(pip install 'sasa-bench[runtimes]')"
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--runtime", "tensorrt"], "--runtime tensorrt runs on --device cuda, not cpu"),
        (["--runtime", "openvino", "--mode", "train"], "measures inference only"),
        (["--runtime", "onnxruntime", "--dtype", "bf16"], "NumPy has no bf16"),
        (["--runtime", "onnxruntime", "--channels-last"], "chooses its own memory layout"),
        (["--compile", "--runtime", "openvino"], "--compile is --runtime compile"),
        (["--translation", "loop"], "--translation is for the exported runtimes"),
        (["--runtime", "jax"], "unknown runtime 'jax'"),
    ],
)
def test_runtime_refusals_are_one_line_and_exit_2(capsys, argv, message):
    code, stdout, err = run_cli(capsys, "bench", "sasa26", *argv)
    assert code == 2 and stdout == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def _parse(*argv):
    import argparse

    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers())
    return parser.parse_args(["bench", *argv])


def test_the_sweep_takes_a_translation_only_where_a_runtime_runs_one():
    args = _parse(
        "resnet26", "sasa26", "--runtime", "eager,onnxruntime", "--translation", "gather,loop"
    )
    found = [(c.model, c.runtime, c.translation) for c in configs_from_args(args)]
    assert found == [
        ("resnet26", "eager", None),
        ("resnet26", "onnxruntime", None),
        ("sasa26", "eager", None),
        ("sasa26", "onnxruntime", "gather"),
        ("sasa26", "onnxruntime", "loop"),
    ]
    default = configs_from_args(_parse("sasa26", "--runtime", "openvino"))
    assert [c.translation for c in default] == [DEFAULT]


def test_compile_is_the_compile_runtime_and_older_records_still_match():
    (config,) = configs_from_args(_parse("resnet26", "--compile"))
    assert config.runtime == "compile" and config.to_dict()["compile"] is True
    older = {k: v for k, v in config.to_dict().items() if k not in ("runtime", "translation")}
    assert config.describes(older) and BenchConfig.from_dict(older) == config
    eager = replace(config, runtime="eager")
    assert eager.describes({**older, "compile": False}) and not eager.describes(older)
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


def test_tensorrt_is_onnxruntime_with_its_provider_then_cuda_then_cpu():
    assert providers("tensorrt", "cuda:1") == [
        ("TensorrtExecutionProvider", {"device_id": 1}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        ("CPUExecutionProvider", {}),
    ]
    assert providers("onnxruntime", "cuda")[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert providers("onnxruntime", "cpu") == [("CPUExecutionProvider", {})]

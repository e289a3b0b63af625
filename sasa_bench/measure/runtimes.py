"""Where a model runs when it is measured: PyTorch eager, torch.compile, or an exported ONNX
file in ONNX Runtime or OpenVINO.

- `eager`: PyTorch op by op, the attention through its backend (`--attn-impl`); every other
  runtime is checked against it;
- `compile`: `torch.compile` (Inductor), compiled during the warm-up;
- `onnxruntime`: ONNX Runtime, its CPU execution provider on a CPU, CUDA's on a GPU;
- `tensorrt`: ONNX Runtime's TensorRT execution provider (CUDA's takes the nodes TensorRT
  leaves, then the CPU's), on a GPU whose onnxruntime build has it;
- `openvino`: OpenVINO's CPU plugin, reading the same ONNX file.

The exported runtimes take the file of `sasa_bench.measure.export` (the attention op through an
ONNX translation, `sasa_bench.kernels.onnx`). Their threads are set to the measurement's
(`--threads`, 1 on a CPU by default): ONNX Runtime's intra-op pool (inter-op 1, sequential) and
OpenVINO's `INFERENCE_NUM_THREADS` (one stream, latency hint). With one thread both run every
node on the calling thread, so the step is timed in that thread's CPU time (`thread-cpu`), as
eager is, and the record's process-over-thread CPU time says so; with several, and on a GPU,
the timer is wall time. OpenVINO runs fp32 models in fp32 (`INFERENCE_PRECISION_HINT`): on a CPU
with AMX or AVX-512 BF16 its default is bf16, which is another measurement.

Before a runtime other than eager is timed, its output on the measured batch is compared with
the float64 network's (the same weights, the reference attention backend): its relative max
error may be `EAGER_FACTOR` times eager's own, and at least `TOLERANCES` per dtype. A network
whose fp32 output is far from its float64 one (deep, with random statistics) then neither
fails a correct runtime nor passes a wrong one by eager's accident; a mismatch is a failed
measurement with the errors (`OutputMismatch`). For that comparison to see every layer, the
BatchNorms of a checked model get random statistics and affine parameters first
(`randomize_batchnorm`): the zero-initialised last BatchNorm of every residual branch would
otherwise hide each block's mixer, the attention included, from the output.
"""

from __future__ import annotations

import copy
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sasa_bench.errors import SasaBenchError, look_up
from sasa_bench.measure.export import export_onnx
from sasa_bench.measure.timing import choose_timer
from sasa_bench.models.resnet import set_attention_impl

EXPORT_MODULES = ("onnx", "onnxscript")
#: the least relative error (max |ours - float64| / max |float64|) allowed of a whole network's
#: output, per dtype: in fp32 about ten times what rounding gives through sasa26 at 64x64
#: (eager 5e-5 from the float64 network, ONNX Runtime and OpenVINO 2e-5 to 7e-5); a wrong
#: translation or a stale file is off by 1e-1 and more
TOLERANCES = {"fp32": 1e-3, "fp16": 5e-2, "bf16": 1e-1}
#: a runtime may be this many times as far from the float64 output as eager is: another order
#: of the same fp32 operations rounds differently, but not by an order of magnitude more
EAGER_FACTOR = 3.0
INSTALL = "pip install 'sasa-bench[runtimes]'"


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    exports: bool = False  # runs the exported ONNX file
    module: str | None = None  # the runtime's Python module (its version goes in the record)
    devices: tuple[str, ...] = ("cpu", "cuda", "mps")
    install: str = INSTALL

    def unavailable(self) -> str | None:
        """Why this runtime cannot run here (a module missing), or None."""
        wanted = (self.module, *EXPORT_MODULES) if self.exports else ()
        for module in wanted:
            try:
                importlib.import_module(module)
            except ImportError:
                return f"{module} is not installed ({self.install})"
        return None

    def require(self) -> Runtime:
        reason = self.unavailable()
        if reason:
            raise SasaBenchError(f"--runtime {self.name}: {reason}")
        return self

    def version(self) -> str:
        if self.module is None:
            return torch.__version__
        return str(importlib.import_module(self.module).__version__)

    def versions(self) -> dict[str, str]:
        """The runtime's version, and the exporter's where it runs an exported file."""
        found = {"name": self.name, "version": self.version()}
        if self.exports and self.unavailable() is None:
            for module in EXPORT_MODULES:
                found[module] = str(importlib.import_module(module).__version__)
        return found

    def timer(self, device: torch.device, threads: int) -> str:
        if not self.exports:
            return choose_timer(device, threads)
        return "thread-cpu" if device.type == "cpu" and threads == 1 else "wall"


RUNTIMES: dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in (
        Runtime("eager", "PyTorch, op by op (its error bounds every other runtime's)"),
        Runtime("compile", "torch.compile (Inductor), compiled in the warm-up"),
        Runtime(
            "onnxruntime",
            "ONNX Runtime on the exported file: CPU execution provider, CUDA's on a GPU",
            exports=True,
            module="onnxruntime",
            devices=("cpu", "cuda"),
        ),
        Runtime(
            "tensorrt",
            "ONNX Runtime's TensorRT execution provider (then CUDA's, then the CPU's)",
            exports=True,
            module="onnxruntime",
            devices=("cuda",),
            install="pip install onnxruntime-gpu, with TensorRT's libraries",
        ),
        Runtime(
            "openvino",
            "OpenVINO's CPU plugin on the exported file",
            exports=True,
            module="openvino",
            devices=("cpu",),
        ),
    )
}


def get_runtime(name: str) -> Runtime:
    return look_up(RUNTIMES, name, "runtime")


def check_runtime(
    name: str, *, device: str, mode: str, dtype: str, amp: bool, layout: bool, here: bool = True
) -> Runtime:
    """The runtime `name`, checked to run this measurement (its packages installed, the
    device, mode and dtype its own; with `here`, ONNX Runtime's execution provider on this
    machine): a SasaBenchError naming the fix otherwise. `layout`: channels-last asked."""
    runtime = get_runtime(name).require()
    kind = torch.device(device).type
    if kind not in runtime.devices:
        raise SasaBenchError(
            f"--runtime {name} runs on --device {' or '.join(runtime.devices)}, not {device}"
        )
    if not runtime.exports:
        return runtime
    for refused, why in (
        (mode != "infer", "measures inference only (--mode infer)"),
        (amp, "runs the exported dtype: no --amp (export with --dtype alone)"),
        (layout, "chooses its own memory layout: no --channels-last"),
        (dtype == "bf16", "takes NumPy inputs, and NumPy has no bf16: --dtype fp32 or fp16"),
    ):
        if refused:
            raise SasaBenchError(f"--runtime {name} {why}")
    if runtime.module == "onnxruntime" and here:
        available = importlib.import_module("onnxruntime").get_available_providers()
        wanted = providers(name, device)[0][0]
        if wanted not in available:
            hint = runtime.install if name == "tensorrt" else "pip install onnxruntime-gpu"
            raise SasaBenchError(
                f"--runtime {name} on {device} needs ONNX Runtime's {wanted}; this onnxruntime "
                f"has {', '.join(available)} ({hint})"
            )
    return runtime


def providers(name: str, device: str) -> list[tuple[str, dict]]:
    """ONNX Runtime's execution providers for runtime `name` on `device`, in order."""
    where = torch.device(device)
    cpu = [("CPUExecutionProvider", {})]
    if where.type != "cuda":
        return cpu
    cuda = [("CUDAExecutionProvider", {"device_id": where.index or 0})]
    if name == "tensorrt":
        return [("TensorrtExecutionProvider", {"device_id": where.index or 0}), *cuda, *cpu]
    return [*cuda, *cpu]


Run = Callable[[np.ndarray], np.ndarray]


def _onnxruntime(path: str, name: str, device: str, threads: int | None, dtype: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default (its cores)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only
    chosen = providers(name, device)
    loaded = ort.InferenceSession(
        path, options, providers=[p for p, _ in chosen], provider_options=[o for _, o in chosen]
    )
    feed = loaded.get_inputs()[0].name

    def run(images: np.ndarray) -> np.ndarray:
        return loaded.run(None, {feed: images})[0]

    used = loaded.get_providers()
    return run, {"provider": used[0], "providers": used, "threads": threads}


def _openvino(path: str, name: str, device: str, threads: int | None, dtype: str):
    import openvino as ov

    core = ov.Core()
    precision = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}[dtype]
    config: dict[str, object] = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_PRECISION_HINT": precision,
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(core.read_model(path), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(images: np.ndarray) -> np.ndarray:
        return request.infer([images], share_inputs=True)[output]

    properties = {
        key.lower(): str(compiled.get_property(key))
        for key in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "INFERENCE_PRECISION_HINT")
    }
    return run, {"provider": "CPU", "threads": threads, **properties}


LOADERS = {"onnxruntime": _onnxruntime, "tensorrt": _onnxruntime, "openvino": _openvino}


def exported_step(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    runtime: Runtime,
    name: str,
    dtype: str,
    translation: str | None,
    device: str,
    threads: int | None,
) -> tuple[Callable[[], np.ndarray], dict[str, object]]:
    """The timed call of `model` exported and loaded in `runtime`, and what the record says of
    it: the runtime's version, provider and threads, the translation, the export (its time,
    whether the cache had it)."""
    exported = export_onnx(model, inputs, name=name, dtype=dtype, translation=translation)
    start = time.perf_counter()
    run, info = LOADERS[runtime.name](exported.path, runtime.name, device, threads, dtype)
    load_s = time.perf_counter() - start
    images = inputs.detach().cpu().numpy()
    described = {
        **runtime.versions(),
        **info,
        "translation": translation,
        "load_s": load_s,
        "export": exported.to_dict(),
    }
    return (lambda: run(images)), described


class OutputMismatch(RuntimeError):
    """A runtime's output is not eager's: the measurement fails, its record keeps the check."""

    def __init__(self, message: str, check: dict[str, object]) -> None:
        super().__init__(message)
        self.metrics = {"output_check": check}


def float64_output(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The output of `model` computed in float64 (a copy, its SASA layers on the reference
    backend; on the CPU where the device has no float64) on `inputs`: what the output check
    measures errors from."""
    device = torch.device("cpu") if inputs.device.type == "mps" else inputs.device
    exact = copy.deepcopy(model).to(device=device, dtype=torch.float64).eval()
    set_attention_impl(exact, "reference")
    with torch.no_grad():
        return exact(inputs.to(device=device, dtype=torch.float64))


def _relative(ours: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    """(max |ours - exact|, that over max |exact|)."""
    error = (ours.double() - exact).abs().max().item()
    return error, error / (exact.abs().max().item() or 1.0)


def check_outputs(
    ours: object, eager: torch.Tensor, exact: torch.Tensor, *, dtype: str, runtime: str
) -> dict:
    """`ours` (a tensor or an array) and `eager` (eager PyTorch's output) against `exact`
    (`float64_output`): `ours` may be off by EAGER_FACTOR times eager's relative error, and at
    least TOLERANCES[dtype]. Returns the check; raises OutputMismatch where it fails."""
    exact = exact.detach().double().cpu()
    got = torch.as_tensor(np.asarray(ours) if not torch.is_tensor(ours) else ours)
    got = got.detach().double().cpu()
    tolerance = TOLERANCES[dtype]
    check: dict[str, object] = {"against": "float64", "tolerance": tolerance}
    if got.shape != exact.shape:
        check |= {"passed": False, "shape": list(got.shape), "expected": list(exact.shape)}
        raise OutputMismatch(
            f"{runtime} output has shape {tuple(got.shape)}, the network's {tuple(exact.shape)}",
            check,
        )
    _, eager_error = _relative(eager.detach().cpu(), exact)
    max_error, relative = _relative(got, exact)
    allowed = max(tolerance, EAGER_FACTOR * eager_error)
    passed = relative <= allowed  # False for NaN too
    check |= {
        "max_abs_error": max_error,
        "relative_error": relative,
        "eager_error": eager_error,
        "allowed": allowed,
        "passed": passed,
    }
    if not passed:
        raise OutputMismatch(
            f"{runtime} output is off the float64 network's: max abs error {max_error:.3g} "
            f"(relative {relative:.3g}; eager's {eager_error:.3g}; {allowed:.3g} allowed for "
            f"{dtype})",
            check,
        )
    return check


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Random running statistics and affine parameters in every BatchNorm (weight and
    variance in [0.5, 1.5], bias and mean ~ N(0, 0.1)), drawn from `seed`: every branch then
    reaches the output the runtimes are checked on."""
    generator = torch.Generator().manual_seed(seed)

    def draw(tensor: torch.Tensor, uniform: bool) -> None:
        values = torch.empty(tensor.shape)
        values = (
            values.uniform_(0.5, 1.5, generator=generator)
            if uniform
            else values.normal_(0.0, 0.1, generator=generator)
        )
        tensor.copy_(values)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
                draw(module.weight, True)
                draw(module.bias, False)
                if module.running_mean is not None:
                    draw(module.running_mean, False)
                    draw(module.running_var, True)

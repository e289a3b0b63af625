"""One benchmark measurement, in this process: build, warm up, time, and return a Record.

`measure(config)` never raises for a failed measurement: it returns a Record with
status "failed" and the error, so that a sweep (`sasa_bench.measure.sweep`) records it and goes on.
Out of memory, on a GPU or on the CPU (`is_out_of_memory`), is retried with half the batch, down
to 1; the asked batch stays in `config.batch_size`, the one measured is `metrics.batch_size`, and
`metrics.oom_batch_sizes` lists the sizes that ran out of memory (timm's benchmark halved
silently and misled its users).

Modes: `infer` times one forward pass under `torch.inference_mode()`; `train` times forward,
cross-entropy loss, backward and an SGD step, and puts the BatchNorm running statistics back
afterwards. `--dtype bf16` alone casts weights and inputs; with `--amp` the weights stay fp32 and
the forward runs under autocast to that dtype (fp16 training then uses a GradScaler).

Runtimes (`sasa_bench.measure.runtimes`): eager, torch.compile, or the exported model in ONNX
Runtime or OpenVINO. Any but eager is checked against the float64 network on the measured
batch after the warm-up and before the timed steps (inference); a mismatch fails the
measurement.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sasa_bench.counters import cost_totals, model_cost_of
from sasa_bench.devices import DTYPES, MODES, check_device, check_dtype
from sasa_bench.errors import SasaBenchError
from sasa_bench.kernels import usable_backend
from sasa_bench.kernels.onnx import DEFAULT as DEFAULT_TRANSLATION
from sasa_bench.kernels.onnx import get_translation
from sasa_bench.measure.memory import MemoryStats, PeakMemory
from sasa_bench.measure.power import PowerMonitor, PowerStats
from sasa_bench.measure.runtimes import (
    check_outputs,
    check_runtime,
    exported_step,
    float64_output,
    get_runtime,
    randomize_batchnorm,
)
from sasa_bench.measure.timing import Stopping, Timed, TimingStats, measure_steps, warm_up
from sasa_bench.models.registry import NamedModel, parse_model
from sasa_bench.models.resnet import IN_CHANNELS, build_model
from sasa_bench.models.spec import ModelSpec
from sasa_bench.models.thirdparty import ThirdPartySpec
from sasa_bench.records import Record, environment


@dataclass(frozen=True)
class BenchConfig:
    """What one measurement was asked to do (stored as `Record.config`)."""

    model: str  # canonical name; the resolution is part of it (the spec's)
    device: str = "cpu"
    dtype: str = "fp32"
    amp: bool = False
    channels_last: bool = False
    runtime: str = "eager"  # sasa_bench.measure.runtimes.RUNTIMES
    translation: str | None = None  # of the attention op to ONNX (exported runtimes; None: default)
    mode: str = "infer"
    batch_size: int = 8  # asked; metrics.batch_size is the one measured
    attn_impl: str = "reference"
    warmup: int = 5
    iters: int = 10  # at least this many timed steps; more until stable or max_time_s is spent
    threads: int | None = None  # torch intra-op threads; None: 1 on a CPU, torch's default else
    seed: int = 0
    max_time_s: float = 10.0  # budget of timed steps beyond the first `iters`, per instance
    instances: int | None = None  # fresh model instances timed; None: 3 on a CPU, 1 elsewhere

    @functools.cached_property
    def named(self) -> NamedModel:
        """The parsed model (parsed once per config)."""
        return parse_model(self.model)

    @property
    def spec(self) -> ModelSpec | ThirdPartySpec:
        return self.named.spec

    @property
    def layout(self) -> str:
        return "channels_last" if self.channels_last else "contiguous"

    @property
    def onnx_translation(self) -> str | None:
        """The translation of the attention op an exported runtime uses (None: the runtime
        runs PyTorch, or the model has no attention layer)."""
        attention = isinstance(self.spec, ModelSpec) and "a" in self.spec.stages
        if not get_runtime(self.runtime).exports or not attention:
            return None
        return self.translation or DEFAULT_TRANSLATION

    @property
    def checked(self) -> bool:
        """Whether the outputs are checked against the float64 network before the timed
        steps."""
        return self.runtime != "eager" and self.mode == "infer"

    def to_dict(self) -> dict[str, Any]:
        """The fields plus the derived ones a reader filters on (resolution, layout, compile:
        whether the runtime is torch.compile)."""
        return {
            **asdict(self),
            "compile": self.runtime == "compile",
            "resolution": self.spec.resolution,
            "layout": self.layout,
            "conventions": self.spec.conventions(),
        }

    @staticmethod
    def upgraded(raw: dict[str, Any]) -> dict[str, Any]:
        """A record's config with every field this version writes: one without `runtime` ran
        in the runtime its `compile` flag names, with no translation."""
        if "runtime" in raw:
            return raw
        return {**raw, "runtime": "compile" if raw.get("compile") else "eager", "translation": None}

    def describes(self, raw: dict[str, Any]) -> bool:
        """Whether a record's config is this measurement."""
        return self.upgraded(raw) == self.to_dict()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in cls.upgraded(raw).items() if k in names})

    def validate(self, *, here: bool = True) -> BenchConfig:
        """Raise SasaBenchError for what the user can fix; return self. `here=False`: the
        measurement runs elsewhere (a Slurm node), so the device is not looked for here."""
        self.spec  # noqa: B018 - parses the model name
        usable_backend(self.attn_impl)  # its library too: before any work
        if here:
            check_device(self.device)
        check_dtype(self.dtype)
        if self.amp and self.dtype == "fp32":
            raise SasaBenchError("--amp needs --dtype bf16 or fp16 (the dtype autocast runs in)")
        if self.mode not in MODES:
            raise SasaBenchError(f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        check_runtime(
            self.runtime, device=self.device, mode=self.mode, dtype=self.dtype, amp=self.amp,
            layout=self.channels_last, here=here,
        )  # fmt: skip
        if self.translation is not None:
            get_translation(self.translation)
            if self.onnx_translation is None:
                raise SasaBenchError(
                    "--translation is the ONNX form of the attention layers: it needs an "
                    "exported runtime (onnxruntime, tensorrt, openvino) and a model with them"
                )
        # one message per flag: each names its flag, the value and the bound
        for flag, value, least in (
            ("--batch-size", self.batch_size, 1),
            ("--iters", self.iters, 1),
            ("--warmup", self.warmup, 0),
            ("--threads", self.threads, 1),
            ("--instances", self.instances, 1),
        ):
            if value is not None and value < least:
                raise SasaBenchError(f"{flag} must be >= {least}, got {value}")
        if not 0 <= self.max_time_s < math.inf:
            raise SasaBenchError(f"--max-time must be >= 0 seconds, got {self.max_time_s}")
        return self

    @property
    def intra_op_threads(self) -> int | None:
        """The thread count the measurement runs with (None: leave torch's)."""
        if self.threads is None and torch.device(self.device).type == "cpu":
            return 1
        return self.threads

    @property
    def fresh_instances(self) -> int:
        """Fresh model instances to time: `instances`, or 3 on a CPU and 1 elsewhere."""
        if self.instances is not None:
            return self.instances
        return 3 if torch.device(self.device).type == "cpu" else 1

    @property
    def stopping(self) -> Stopping:
        return Stopping(
            min_samples=self.iters, max_samples=max(10 * self.iters, 50), budget_s=self.max_time_s
        )


def bench_environment(device: str, runtime: str = "eager") -> dict[str, Any]:
    """records.environment() plus what bears on CPU and multi-GPU numbers, and the runtime's
    versions (and the exporter's)."""
    env = environment(device)
    env["torch_threads"] = torch.get_num_threads()
    env["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    env["runtime"] = get_runtime(runtime).versions()
    return env


#: what an allocation failure says: CUDA's and MPS's allocators ("... out of memory"), and the
#: CPU's (c10's alloc_cpu: "DefaultCPUAllocator: can't allocate memory: you tried to allocate
#: N bytes. Error code 12 (Cannot allocate memory)", or "... not enough memory: ...")
OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """An allocation failure on any device: retried at half the batch."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(phrase in text for phrase in OUT_OF_MEMORY)


def measure(config: BenchConfig) -> Record:
    """Measure `config` (halving the batch on out-of-memory); a failure is a failed Record."""
    spec = config.spec
    record = Record(
        "bench",
        config.named.name,
        config=config.to_dict(),
        cost=cost_totals(spec),  # traced, and labelled so, for a third-party model
        env=bench_environment(config.device, config.runtime),
    )
    batch, oom = config.batch_size, []
    while True:
        error = None
        try:
            metrics = measure_once(spec, config, batch)
        except Exception as caught:  # recorded, never lost: the sweep goes on
            error = caught
        if error is None:
            record.metrics = {**metrics, "oom_batch_sizes": oom, "oom_retries": len(oom)}
            return record
        if not is_out_of_memory(error):
            record.status = "failed"
            record.error = f"{type(error).__name__}: {error}".strip()
            # what the failure measured (an output check's errors) stays in the record
            found = getattr(error, "metrics", {})
            record.metrics = {"batch_size": batch, "oom_batch_sizes": oom, **found}
            return record
        oom.append(batch)
        del error  # the traceback holds the tensors of the failed step
        release_memory()
        if batch == 1:
            record.status = "failed"
            record.error = "out of memory at every batch size tried: " + ", ".join(map(str, oom))
            record.metrics = {"batch_size": None, "oom_batch_sizes": oom}
            return record
        batch //= 2


def release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class _Instance(NamedTuple):
    """One fresh instance's timing, first step, peak memory, energy, runtime and check."""

    timed: Timed
    first_ms: float | None
    peak: MemoryStats
    energy: PowerStats
    runtime: dict[str, Any]
    check: dict[str, Any] | None


def measure_once(
    spec: ModelSpec | ThirdPartySpec, config: BenchConfig, batch: int
) -> dict[str, Any]:
    """Metrics of one measurement at `batch` (raises on failure, out of memory included).

    On a CPU the model and its inputs are built `config.instances` times afresh and each is
    timed: the CPU time of the same steps moves between fresh allocations (by up to 1.6x on a
    2-core VM for the memory-bound reference attention, with a spread of a few % within each),
    so the fastest instance is reported, and it counts as reliable only where a second instance
    confirms it within `CONFIRM`."""
    device = torch.device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    runs: list[_Instance] = []
    runtime = get_runtime(config.runtime)
    with intra_op_threads(config.intra_op_threads):
        threads = config.intra_op_threads if runtime.exports else torch.get_num_threads()
        timer = runtime.timer(device, threads or 0)
        for instance in range(config.fresh_instances):
            torch.manual_seed(config.seed)
            model, inputs = prepare(spec, config, batch, device)
            step, described = runtime_step(model, inputs, config, spec.num_classes)
            with preserved_batchnorm(model):
                first_ms = warm_up(step, device, config.warmup)
                # every instance has the same weights and file: one check says it for all
                check = output_check(model, inputs, step, config) if not runs else runs[0].check
                memory = PeakMemory(device)
                memory.reset()
                with PowerMonitor(config.device) as power:
                    timed = measure_steps(
                        step, device, threads=threads or 0, stopping=config.stopping, timer=timer
                    )
            # memory of the first instance: nothing of another instance is alive before it
            peak = memory.read() if instance == 0 else runs[0].peak
            energy = power.result(images=batch * len(timed.stats.samples_ms))
            runs.append(_Instance(timed, first_ms, peak, energy, described, check))
            del model, inputs, step
    fastest = min(runs, key=lambda run: run.timed.stats.median_ms)
    timed, first_ms, peak, energy = fastest.timed, fastest.first_ms, fastest.peak, fastest.energy
    timing = timed.stats
    medians = [run.timed.stats.median_ms for run in runs]
    placement = placement_reason(medians, "instances")
    flops = model_cost_of(spec).flops
    metrics = timed.to_metrics()
    if placement:
        metrics["reliable"] = False
        metrics["unreliable_reasons"] = [*metrics["unreliable_reasons"], placement]
    return {
        "batch_size": batch,
        "iters": len(timing.samples_ms),
        "warmup": config.warmup,
        "threads": threads,
        "first_step_ms": first_ms,
        **metrics,
        "instances": len(runs),
        "instance_medians_ms": medians,
        "runtime": fastest.runtime,
        "output_check": fastest.check,
        "latency_ms": timing.median_ms,  # per batch
        "latency_iqr_ms": timing.iqr_ms,
        "images_per_s": 1e3 * batch / timing.median_ms,
        # the images/s of the samples' quartiles: the spread of the throughput
        "images_per_s_iqr": 1e3 * batch * timing.iqr_ms / _quartile_product(timing),
        "forward_flops_per_s": flops * 1e3 * batch / timing.median_ms,
        **{k: v for k, v in peak.to_dict().items() if k != "note"},
        **{k: v for k, v in energy.to_dict().items() if k != "note"},
        "notes": [
            note
            for note in (
                _warmup_note(config),
                *metrics["unreliable_reasons"],
                peak.note,
                energy.note,
            )  # fmt: skip
            if note
        ],
    }


#: the second-fastest fresh instance must be within this factor of the fastest
CONFIRM = 1.10


def placement_reason(medians: list[float], what: str) -> str | None:
    """Why the fastest of several fresh `what` (instances, processes) is not confirmed, or
    None."""
    if len(medians) < 2:
        return None
    fastest, second = sorted(medians)[:2]
    if second <= CONFIRM * fastest:
        return None
    spread = ", ".join(f"{m:.2f}" for m in medians)
    return (
        f"fresh {what} disagree (medians {spread} ms; no second within "
        f"{100 * (CONFIRM - 1):.0f}% of the fastest): memory placement"
    )


def _quartile_product(timing: TimingStats) -> float:
    """q1 x q3 of the step times: 1/q1 - 1/q3 = (q3 - q1) / (q1 q3) is the throughput's IQR."""
    q1, q3 = np.percentile(timing.samples_ms, [25, 75])
    return float(q1 * q3) if q1 > 0 else float("inf")


def _warmup_note(config: BenchConfig) -> str | None:
    if config.warmup:
        return None
    return "no warm-up: one-off costs of the first step (allocation, tuning) are in the samples"


def prepare(
    spec: ModelSpec | ThirdPartySpec, config: BenchConfig, batch: int, device: torch.device
) -> tuple[nn.Module, torch.Tensor]:
    """The model and a batch of random images, in the dtype and memory layout asked."""
    dtype = DTYPES[config.dtype]
    weights_dtype = torch.float32 if config.amp else dtype
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model = build_model(spec, attn_impl=config.attn_impl)
    model = model.to(device=device, dtype=weights_dtype, memory_format=layout)
    if config.checked:
        randomize_batchnorm(model, config.seed)
    size = (batch, IN_CHANNELS, spec.resolution, spec.resolution)
    inputs = torch.randn(size, device=device, dtype=weights_dtype).contiguous(memory_format=layout)
    return model, inputs


def runtime_step(
    model: nn.Module, inputs: torch.Tensor, config: BenchConfig, num_classes: int
) -> tuple[Callable[[], object], dict[str, Any]]:
    """The timed closure in `config.runtime`, and what the record says of the runtime."""
    runtime = get_runtime(config.runtime)
    if runtime.exports:
        return exported_step(
            model, inputs, runtime=runtime, name=config.named.name, dtype=config.dtype,
            translation=config.onnx_translation, device=config.device,
            threads=config.intra_op_threads,
        )  # fmt: skip
    compiled = torch.compile(model) if runtime.name == "compile" else model
    described = {**runtime.versions(), "threads": torch.get_num_threads()}
    return make_step(compiled, inputs, config, num_classes), described


def output_check(
    model: nn.Module, inputs: torch.Tensor, step: Callable[[], object], config: BenchConfig
) -> dict[str, Any] | None:
    """The runtime's output and eager's against the float64 network's on the same batch (None
    where nothing is checked: eager itself, training); raises OutputMismatch where the
    runtime's is off."""
    if not config.checked:
        return None
    eager = make_step(model, inputs, config, config.spec.num_classes)()
    exact = float64_output(model, inputs)
    return check_outputs(step(), eager, exact, dtype=config.dtype, runtime=config.runtime)


def make_step(
    model: nn.Module, inputs: torch.Tensor, config: BenchConfig, num_classes: int
) -> Callable[[], object]:
    """The closure that is timed: inference, or one full training step."""
    device = inputs.device

    def autocast() -> contextlib.AbstractContextManager:
        if not config.amp:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=DTYPES[config.dtype])

    if config.mode == "infer":
        model.eval()

        def infer() -> object:
            with torch.inference_mode(), autocast():
                return model(inputs)

        return infer

    model.train()
    target = torch.randint(0, num_classes, (inputs.shape[0],), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type) if config.amp and config.dtype == "fp16" else None

    def train() -> object:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(model(inputs), target)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        return loss

    return train


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """torch.set_num_threads(threads) for the block (None: leave it)."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def preserved_batchnorm(model: nn.Module) -> Iterator[None]:
    """Put every BatchNorm's running statistics back as they were (train steps update them)."""
    saved = {
        name: buffer.detach().clone()
        for name, buffer in model.named_buffers()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in saved:
                    buffer.copy_(saved[name])

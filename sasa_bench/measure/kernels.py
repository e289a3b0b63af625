"""Attention kernels at a network's stage shapes, beside a 3x3 convolution, in one run.

For every shape: forward and forward+backward time of each backend and of a 3x3 conv with the
same channels (cuDNN on a GPU), peak memory of the forward, and the memory floor: a fused
kernel must at least read q, k, v and write the output (4 x N x C elements). The floor time is
those bytes at the copy bandwidth measured in the same run (a device-to-device copy of a large
tensor), so the ratio needs no datasheet number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sasa_bench.errors import SasaBenchError
from sasa_bench.kernels import window_attention
from sasa_bench.kernels.verify import available_backends
from sasa_bench.measure.memory import PeakMemory
from sasa_bench.measure.model import intra_op_threads
from sasa_bench.measure.timing import Stopping, measure_steps, summarize, time_steps, warm_up
from sasa_bench.records import Record, environment

#: (height, width, channels) of the attention layers of each network, one per layer group
SHAPES = {
    "resnet50": ((56, 56, 64), (28, 28, 128), (14, 14, 256), (7, 7, 512)),
    "tiny": ((14, 14, 32), (7, 7, 64)),
}


@dataclass
class KernelBench:
    backend: str
    shape: str  # "HxWxC"
    batch: int
    dtype: str
    device: str
    forward_ms: float | None = None
    forward_backward_ms: float | None = None
    peak_memory_bytes: int | None = None  # allocator peak of the forward (CUDA only)
    floor_bytes: int = 0
    floor_ms: float | None = None
    floor_ratio: float | None = None  # forward time / floor time
    achieved_gb_per_s: float | None = None  # floor bytes / forward time
    conv_forward_ms: float | None = None
    conv_forward_backward_ms: float | None = None
    note: str | None = None

    @property
    def conv_ratio(self) -> float | None:
        if self.forward_ms is None or not self.conv_forward_ms:
            return None
        return self.forward_ms / self.conv_forward_ms

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "conv_ratio": self.conv_ratio}


def copy_bandwidth_gb_per_s(device: torch.device, megabytes: int, iters: int = 10) -> float:
    """Bytes read + written per second by a device-to-device copy of a large tensor."""
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    warm_up(lambda: target.copy_(source), device, 2)
    stats = summarize(time_steps(lambda: target.copy_(source), device, iters))
    return 2 * source.numel() / (stats.median_ms * 1e-3) / 1e9


def skip_reason(backend: str, device: torch.device) -> str | None:
    if device.type == "cuda":
        return None
    if backend == "triton":
        return "runs in Triton's interpreter on CPU: correct, not a benchmark"
    if backend == "flex":
        return "eager FlexAttention materialises every score on CPU: not a benchmark"
    return None


def _timed(step, device, warmup: int, iters: int) -> float:
    """The median ms of `step`: at least `iters` timed calls, more (up to 2 s) until stable,
    in the timer `measure.timing` chooses (the thread's CPU time on one CPU thread)."""
    warm_up(step, device, warmup)
    stopping = Stopping(min_samples=iters, max_samples=5 * iters, budget_s=2.0)
    return measure_steps(
        step, device, threads=torch.get_num_threads(), stopping=stopping
    ).stats.median_ms


def bench_shape(
    backends: list[str],
    shape: tuple[int, int, int],
    *,
    batch: int,
    dtype: torch.dtype,
    device: torch.device,
    heads: int = 8,
    kernel_size: int = 7,
    warmup: int = 3,
    iters: int = 10,
    bandwidth_gb_per_s: float,
) -> list[KernelBench]:
    height, width, channels = shape
    if channels % heads:
        raise SasaBenchError(f"{channels} channels do not split into {heads} heads")
    label = f"{height}x{width}x{channels}"
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format

    def tensor(requires_grad: bool = True) -> torch.Tensor:
        t = torch.randn(batch, channels, height, width, device=device, dtype=dtype)
        return t.to(memory_format=fmt).requires_grad_(requires_grad)

    q, k, v = tensor(), tensor(), tensor()
    rel = torch.randn(heads, channels // heads, kernel_size**2, device=device, dtype=dtype)
    rel.requires_grad_(True)
    grad = tensor(False)
    floor_bytes = 4 * q.numel() * q.element_size()
    floor_ms = floor_bytes / (bandwidth_gb_per_s * 1e9) * 1e3
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    conv = conv.to(device, dtype, memory_format=fmt)

    def conv_fwd():
        with torch.no_grad():
            conv(q)

    def conv_fwd_bwd():
        conv(q).backward(grad)

    conv_fwd_ms = _timed(conv_fwd, device, warmup, iters)
    conv_fwd_bwd_ms = _timed(conv_fwd_bwd, device, warmup, iters)
    rows = []
    for name in backends:
        row = KernelBench(
            name,
            label,
            batch,
            str(dtype).removeprefix("torch."),
            str(device),
            floor_bytes=floor_bytes,
            floor_ms=floor_ms,
            conv_forward_ms=conv_fwd_ms,
            conv_forward_backward_ms=conv_fwd_bwd_ms,
        )
        row.note = skip_reason(name, device)
        if row.note is None:
            _measure(row, name, (q, k, v, rel, grad), kernel_size, heads, device, warmup, iters)
        rows.append(row)
    return rows


def _measure(row, name, tensors, kernel_size, heads, device, warmup, iters) -> None:
    q, k, v, rel, grad = tensors

    def forward():
        with torch.no_grad():
            return window_attention(q, k, v, rel, kernel_size, heads, name)

    def forward_backward():
        window_attention(q, k, v, rel, kernel_size, heads, name).backward(grad)

    try:
        memory = PeakMemory(device)
        warm_up(forward, device, warmup)
        memory.reset()
        row.forward_ms = _timed(forward, device, 0, iters)
        row.peak_memory_bytes = memory.read().peak_allocated_bytes  # None off CUDA: no allocator
        # peak, and a process RSS would not be the kernel's
        row.forward_backward_ms = _timed(forward_backward, device, warmup, iters)
    except torch.OutOfMemoryError:
        row.note = "out of memory"
    except Exception as error:  # one failing backend is a row, not a crash of the run
        row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    if name == "triton" and device.type == "cuda" and row.note is None:
        from sasa_bench.kernels.triton_window import chosen_tiles

        row.note = f"autotuned: {chosen_tiles()}"
    if row.forward_ms:
        row.floor_ratio = row.forward_ms / row.floor_ms
        row.achieved_gb_per_s = row.floor_bytes / (row.forward_ms * 1e-3) / 1e9


def kernel_record(device: str) -> Record:
    """Every available backend at the stage shapes beside a 3x3 conv, as a Record of kind
    "kernels": ResNet-50's shapes, batch 32, bf16 on a GPU; two small shapes, batch 2, fp32, one
    thread on a CPU (where the compiled backends would only run interpreted)."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    names = [n for n, reason in available_backends().items() if reason is None]
    rows = []
    with intra_op_threads(None if cuda else 1):
        bandwidth = copy_bandwidth_gb_per_s(dev, 1024 if cuda else 128)
        for shape in SHAPES["resnet50" if cuda else "tiny"]:
            rows += bench_shape(
                names,
                shape,
                batch=32 if cuda else 2,
                dtype=torch.bfloat16 if cuda else torch.float32,
                device=dev,
                warmup=3 if cuda else 1,
                iters=10 if cuda else 3,
                bandwidth_gb_per_s=bandwidth,
            )
    return Record(
        "kernels",
        "-",
        config={"device": device, "copy_gb_per_s": bandwidth},
        metrics={"rows": [r.to_dict() for r in rows]},
        env=environment(device),
    )

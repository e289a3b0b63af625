"""Measured time and peak memory of each layer of a forward pass: the per-layer table, measured.

Forward pre- and post-hooks on the named modules bracket each layer. Time: on CUDA a pair of
CUDA events per call (device time, read after one synchronize at the end of the pass);
elsewhere a host timer, with a synchronize on MPS. The time of a layer is the sum over its calls
in one forward pass, and the median over `iters` passes after `warmup` ones. Hooks cost a few
microseconds per layer, so tiny layers read slightly high, and the sum of the layers is a little
less than a whole forward (the work between layers, such as residual additions, is in none).

Peak memory is measured in a separate pass, so that it does not disturb the timing: the most
memory the layer's forward needed above what was allocated when it began (its output plus its
temporaries). On CUDA from the caching allocator (reset at each layer's start); on other
devices from a dispatch mode that adds up the storages of the tensors each operation creates
and subtracts them when they are freed (what one kernel allocates inside itself is not seen).
The named layers must not nest (each layer resets the peak of the one around it).
"""

from __future__ import annotations

import contextlib
import statistics
import time
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from sasa_bench.analysis.timing import synchronize


def measure_layer_latency(
    model: nn.Module,
    inputs: torch.Tensor,
    device: torch.device | str | None = None,
    *,
    names: Sequence[str] | None = None,
    warmup: int = 1,
    iters: int = 3,
) -> dict[str, dict[str, float | int]]:
    """{qualified module name: {"time_ms", "peak_memory_bytes", "calls"}} for a forward pass
    of `model` on `inputs` (under inference_mode; the caller sets eval/train mode).

    `names` defaults to the layers of the analytic cost (`model_cost(model.spec).layers`) when
    the model has a spec, else to every leaf module."""
    device = torch.device(device) if device is not None else inputs.device
    names = list(names) if names is not None else default_layer_names(model)
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise ValueError(f"no module named {', '.join(missing)} in the model")
    nested = [a for a in names for b in names if b.startswith(a + ".")]
    if nested:
        raise ValueError(f"layers must not nest: {', '.join(sorted(set(nested)))} hold others")
    layers = {name: modules[name] for name in names}

    with torch.inference_mode():
        for _ in range(warmup):
            model(inputs)
        synchronize(device)
        passes = [_timed_pass(model, inputs, layers, device) for _ in range(iters)]
        peaks, calls = _memory_pass(model, inputs, layers, device)
    return {
        name: {
            "time_ms": statistics.median(p[name] for p in passes),
            "peak_memory_bytes": peaks[name],
            "calls": calls[name],
        }
        for name in names
    }


def default_layer_names(model: nn.Module) -> list[str]:
    spec = getattr(model, "spec", None)
    if spec is not None:
        from sasa_bench.analysis.complexity import model_cost

        return [layer.name for layer in model_cost(spec).layers]
    return [name for name, m in model.named_modules() if name and not any(m.children())]


@contextlib.contextmanager
def _hooks(layers: dict[str, nn.Module], before, after) -> Iterator[None]:
    handles = []
    for name, module in layers.items():
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: before(n)))
        handles.append(module.register_forward_hook(lambda *_, n=name: after(n)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _timed_pass(
    model: nn.Module, inputs: torch.Tensor, layers: dict[str, nn.Module], device: torch.device
) -> dict[str, float]:
    """Milliseconds per layer (summed over its calls) in one forward pass."""
    totals: dict[str, float] = defaultdict(float)
    if device.type == "cuda":
        open_events: dict[str, list[Any]] = defaultdict(list)
        pairs: list[tuple[str, Any, Any]] = []

        def before(name: str) -> None:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            open_events[name].append(start)

        def after(name: str) -> None:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            pairs.append((name, open_events[name].pop(), end))

        with _hooks(layers, before, after):
            model(inputs)
        torch.cuda.synchronize(device)
        for name, start, end in pairs:
            totals[name] += start.elapsed_time(end)
        return totals

    starts: dict[str, float] = {}

    def host_before(name: str) -> None:
        synchronize(device)
        starts[name] = time.perf_counter()

    def host_after(name: str) -> None:
        synchronize(device)
        totals[name] += 1e3 * (time.perf_counter() - starts.pop(name))

    with _hooks(layers, host_before, host_after):
        model(inputs)
    return totals


def _memory_pass(
    model: nn.Module, inputs: torch.Tensor, layers: dict[str, nn.Module], device: torch.device
) -> tuple[dict[str, int], dict[str, int]]:
    peaks: dict[str, int] = defaultdict(int)
    calls: dict[str, int] = defaultdict(int)
    base: dict[str, int] = {}
    if device.type == "cuda":
        tracker = None

        def current() -> int:
            return torch.cuda.memory_allocated(device)

        def reset() -> None:
            torch.cuda.reset_peak_memory_stats(device)

        def peak() -> int:
            return torch.cuda.max_memory_allocated(device)
    else:
        tracker = LiveTensorBytes()
        current, reset, peak = tracker.current, tracker.reset_peak, tracker.peak

    def before(name: str) -> None:
        base[name] = current()
        reset()

    def after(name: str) -> None:
        peaks[name] = max(peaks[name], peak() - base[name])
        calls[name] += 1

    with _hooks(layers, before, after), tracker or contextlib.nullcontext():
        model(inputs)
    return peaks, calls


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storages created under this mode and still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self._live = 0
        self._peak = 0
        self._seen = WeakIdKeyDictionary()  # storages counted (a view shares its base's)

    def current(self) -> int:
        return self._live

    def peak(self) -> int:
        return self._peak

    def reset_peak(self) -> None:
        self._peak = self._live

    def _freed(self, nbytes: int) -> None:
        self._live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor):
                continue
            try:
                storage = tensor.untyped_storage()
            except (RuntimeError, NotImplementedError):  # sparse, mkldnn: not tracked
                continue
            if storage in self._seen:
                continue  # a view, or an in-place result
            self._seen[storage] = True
            nbytes = storage.nbytes()
            self._live += nbytes
            self._peak = max(self._peak, self._live)
            weakref.finalize(storage, self._freed, nbytes)
        return out


def layer_latency_rows(
    model: str,
    *,
    device: str = "cpu",
    batch_size: int = 1,
    dtype: str = "fp32",
    channels_last: bool = False,
    attn_impl: str = "reference",
    warmup: int = 1,
    iters: int = 5,
) -> list[dict[str, Any]]:
    """The per-layer table of `model` (a name of the model grammar), measured: for each layer
    of its analytic cost, in the same order, name, type, time_ms, time_share (of the layers'
    sum), peak_memory_bytes, calls, flops (per image, analytic) and flops_per_s achieved
    (None for layers that count no FLOPs). Raises SasaBenchError for a bad model or device."""
    from sasa_bench.analysis.complexity import model_cost
    from sasa_bench.bench import BenchConfig, prepare

    config = BenchConfig(
        model,
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        attn_impl=attn_impl,
        batch_size=batch_size,
    ).validate()
    spec = config.spec
    net, inputs = prepare(spec, config, batch_size, torch.device(device))
    measured = measure_layer_latency(net.eval(), inputs, device, warmup=warmup, iters=iters)
    total_ms = sum(row["time_ms"] for row in measured.values())
    rows = []
    for layer in model_cost(spec).layers:
        row = measured[layer.name]
        seconds = row["time_ms"] / 1e3
        rate = layer.flops * batch_size / seconds if layer.flops and seconds > 0 else None
        rows.append(
            {
                "name": layer.name,
                "type": layer.type,
                **row,
                "time_share": row["time_ms"] / total_ms if total_ms else 0.0,
                "flops": layer.flops,
                "flops_per_s": rate,
            }
        )
    return rows

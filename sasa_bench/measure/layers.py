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
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from sasa_bench.measure.memory import tensor_peak
from sasa_bench.measure.model import BenchConfig, intra_op_threads, prepare
from sasa_bench.measure.timing import choose_timer, synchronize
from sasa_bench.models.resnet import model_cost
from sasa_bench.records import Record, environment


def measure_layer_latency(
    model: nn.Module,
    inputs: torch.Tensor,
    device: torch.device | str | None = None,
    *,
    names: Sequence[str] | None = None,
    warmup: int = 1,
    iters: int = 3,
) -> dict[str, dict[str, float | int]]:
    """{qualified module name: {"time_ms", "time_samples_ms", "timer", "peak_memory_bytes",
    "calls"}} for a forward pass of `model` on `inputs` (under inference_mode; the caller sets
    eval/train mode). `time_ms` is the median over the passes, `time_samples_ms` one per pass;
    the timer is the layer's CPU time where torch runs on one CPU thread (`thread-cpu`), else
    as `sasa_bench.measure.timing` chooses.

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
        timer = choose_timer(device, torch.get_num_threads())
        passes = [_timed_pass(model, inputs, layers, device, timer) for _ in range(iters)]
        peaks, calls = _memory_pass(model, inputs, layers, device)
    return {
        name: {
            "time_ms": statistics.median(p[name] for p in passes),
            "time_samples_ms": [p[name] for p in passes],
            "timer": timer,
            "peak_memory_bytes": peaks[name],
            "calls": calls[name],
        }
        for name in names
    }


def default_layer_names(model: nn.Module) -> list[str]:
    spec = getattr(model, "spec", None)
    if spec is not None:
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
    model: nn.Module,
    inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    device: torch.device,
    timer: str,
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
    clock = time.thread_time if timer == "thread-cpu" else time.perf_counter

    def host_before(name: str) -> None:
        synchronize(device)
        starts[name] = clock()

    def host_after(name: str) -> None:
        synchronize(device)
        totals[name] += 1e3 * (clock() - starts.pop(name))

    with _hooks(layers, host_before, host_after):
        model(inputs)
    return totals


def _memory_pass(
    model: nn.Module, inputs: torch.Tensor, layers: dict[str, nn.Module], device: torch.device
) -> tuple[dict[str, int], dict[str, int]]:
    peaks: dict[str, int] = defaultdict(int)
    calls: dict[str, int] = defaultdict(int)
    base: dict[str, int] = {}
    tracker = tensor_peak(device)

    def before(name: str) -> None:
        base[name] = tracker.current()
        tracker.reset_peak()

    def after(name: str) -> None:
        peaks[name] = max(peaks[name], tracker.peak() - base[name])
        calls[name] += 1

    with _hooks(layers, before, after), tracker:
        model(inputs)
    return peaks, calls


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
    with intra_op_threads(config.intra_op_threads):
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


def layer_record(config: BenchConfig, passes: int = 5) -> Record:
    """The measured time of every layer of `config.model` (batch 1, `passes` forward passes)
    as a Record of kind "layers": the median per layer, and each pass's time (failed, with the
    error, where it cannot be measured)."""
    record = Record("layers", config.model, config=config.to_dict(), env=environment(config.device))
    try:
        rows = layer_latency_rows(config.model, device=config.device, batch_size=1, iters=passes)
        record.metrics = {
            "layers": {r["name"]: r["time_ms"] for r in rows},
            "layer_samples_ms": {r["name"]: r["time_samples_ms"] for r in rows},
            "passes": passes,
            "timer": rows[0]["timer"] if rows else None,
            "batch_size": 1,
        }
    except Exception as error:  # recorded; the caller goes on
        record.status, record.error = "failed", f"{type(error).__name__}: {error}"
    return record

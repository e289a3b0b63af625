"""Running one speed check: two subjects timed interleaved, their ratio per repeat, their peaks.

Absolute times on a shared machine move by 20 % from run to run (other jobs, clocks, thermal
state), mostly for both sides of a pair alike. So a check never compares times: it times a, then
b, then b, then a, ... (`interleaved_times`) and keeps one ratio a/b per repeat; a slower machine
scales both and leaves the ratio. Each sample is the median of `inner` calls, so that the odd
preempted call does not make a ratio. Memory is taken in one further, untimed call of each side:
on CUDA the allocator's peak above what was allocated before the call; elsewhere the peak of the
tensors alive under a dispatch mode (`LiveTensorBytes`): deterministic, but blind to what one op
allocates inside itself. Attention subjects in `infer` mode call the backend's forward directly
(not through the custom op), so that on a CPU the peak includes the reference loop's temporaries.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import torch
from torch import nn

from sasa_bench.devices import DTYPES, check_device
from sasa_bench.errors import SasaBenchError
from sasa_bench.kernels import get_backend, window_attention
from sasa_bench.measure.memory import step_peak_bytes
from sasa_bench.measure.model import BenchConfig, intra_op_threads, make_step, prepare
from sasa_bench.measure.timing import thread_cpu_steps, time_steps, warm_up
from sasa_bench.models.registry import parse_model
from sasa_bench.records import Record
from sasa_bench.regression.baseline import Measured, Settings, SpeedCheck

Step = Callable[[], object]
Timer = Callable[[Step, int], list[float]]  # milliseconds of each of n calls


def measure_check(check: SpeedCheck, settings: Settings) -> Measured:
    """Time `check.a` over `check.b` on `settings.device`, interleaved; and their peaks."""
    check_device(settings.device)
    device = torch.device(settings.device)
    with intra_op_threads(settings.threads):
        steps = {
            side: build_step(subject, check, settings, device)
            for side, subject in (("a", check.a), ("b", check.b))
        }
        for step in steps.values():
            warm_up(step, device, settings.warmup)
        a_ms, b_ms = interleaved_times(
            steps["a"], steps["b"], _timer(settings, device), settings.repeats, settings.inner
        )
        peaks = {side: step_peak_bytes(step, device) for side, step in steps.items()}
    ratios = [a / b for a, b in zip(a_ms, b_ms, strict=True)]
    return Measured(
        ratio=statistics.median(ratios),
        ratio_samples=ratios,
        a_ms=statistics.median(a_ms),
        b_ms=statistics.median(b_ms),
        memory_bytes={side: peak for side, (peak, _) in peaks.items()},
        memory_source=peaks["a"][1],
    )


def _timer(settings: Settings, device: torch.device) -> Timer:
    if settings.timer == "thread-cpu":
        return thread_cpu_steps
    return lambda step, calls: time_steps(step, device, calls)


def interleaved_times(
    step_a: Step, step_b: Step, timer: Timer, repeats: int, inner: int
) -> tuple[list[float], list[float]]:
    """Per repeat, the median ms of `inner` calls of a and of b; b goes first on odd repeats,
    so that a drift of the machine during the run weighs on both sides alike."""
    if repeats < 2 or inner < 1:
        raise SasaBenchError("a speed check needs repeats >= 2 and inner >= 1")
    a_ms: list[float] = []
    b_ms: list[float] = []
    for repeat in range(repeats):
        order = [(step_a, a_ms), (step_b, b_ms)]
        for step, samples in order[:: 1 if repeat % 2 == 0 else -1]:
            samples.append(statistics.median(timer(step, inner)))
    return a_ms, b_ms


def build_step(subject: str, check: SpeedCheck, settings: Settings, device: torch.device) -> Step:
    """The call that is timed for one subject of a check (inputs made once, seeded)."""
    kind, _, rest = subject.partition(":")
    torch.manual_seed(0)
    train = check.mode == "train"
    if kind == "model":
        config = BenchConfig(
            rest,
            device=settings.device,
            dtype=settings.dtype,
            channels_last=settings.channels_last,
            mode=check.mode,
            batch_size=check.batch,
            attn_impl=check.attn_impl,
        ).validate()
        model, inputs = prepare(config.spec, config, check.batch, device)
        return make_step(model, inputs, config, config.spec.num_classes)
    height, width, channels = check.shape or (0, 0, 0)
    dtype = DTYPES[settings.dtype]
    layout = torch.channels_last if settings.channels_last else torch.contiguous_format

    def tensor(requires_grad: bool) -> torch.Tensor:
        t = torch.randn(check.batch, channels, height, width, device=device, dtype=dtype)
        return t.to(memory_format=layout).requires_grad_(requires_grad)

    q, grad = tensor(train), tensor(False)
    if kind == "conv3x3":
        conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        conv = conv.to(device, dtype, memory_format=layout)
        return (lambda: conv(q).backward(grad)) if train else _no_grad(lambda: conv(q))
    backend = get_backend(rest)
    reason = backend.unavailable()
    if reason:
        raise SasaBenchError(f"backend {rest!r} is unavailable: {reason}")
    if channels % check.heads:
        raise SasaBenchError(f"{channels} channels do not split into {check.heads} heads")
    k, v = tensor(train), tensor(train)
    rel = torch.randn(check.heads, channels // check.heads, check.k**2, device=device, dtype=dtype)
    rel.requires_grad_(train)
    if train:
        return lambda: window_attention(q, k, v, rel, check.k, check.heads, rest).backward(grad)
    forward, _ = backend.load()
    return _no_grad(lambda: forward(q, k, v, rel, check.k, check.heads)[0])


def _no_grad(call: Step) -> Step:
    def step() -> object:
        with torch.no_grad():
            return call()

    return step


def measured_from_records(check: SpeedCheck, settings: Settings, records: Sequence[Record]):
    """A model-pair check from `sasa-bench bench` records instead of a live run: the ratio
    samples are a's step times over b's, paired in order (not interleaved: run both in one
    sweep, right after each other), the peaks the records' allocator (CUDA) or RSS peaks."""
    found = {}
    for side, subject in (("a", check.a), ("b", check.b)):
        kind, _, name = subject.partition(":")
        if kind != "model":
            raise SasaBenchError(
                f"speed check {check.name!r}: {subject!r} needs a live run (records hold models)"
            )
        found[side] = _latest_record(records, parse_model(name).name, check, settings)
    a, b = (found[side].metrics for side in ("a", "b"))
    count = min(len(a["samples_ms"]), len(b["samples_ms"]))
    if count < 2:
        raise SasaBenchError(f"speed check {check.name!r}: the records hold < 2 samples each")
    ratios = [x / y for x, y in zip(a["samples_ms"][:count], b["samples_ms"][:count], strict=True)]
    source = "record-allocator" if a.get("peak_allocated_bytes") is not None else "record-rss"
    key = "peak_allocated_bytes" if source == "record-allocator" else "peak_rss_bytes"
    return Measured(
        ratio=statistics.median(ratios),
        ratio_samples=ratios,
        a_ms=a["median_ms"],
        b_ms=b["median_ms"],
        memory_bytes={"a": a.get(key), "b": b.get(key)},
        memory_source=source,
    )


def _latest_record(
    records: Sequence[Record], model: str, check: SpeedCheck, settings: Settings
) -> Record:
    wanted = {
        "mode": check.mode,
        "batch_size": check.batch,
        "dtype": settings.dtype,
        "attn_impl": check.attn_impl,
    }
    matching = [
        r
        for r in records
        if r.kind == "bench"
        and r.status == "ok"
        and r.model == model
        and all(r.config.get(key) == value for key, value in wanted.items())
        and r.metrics.get("batch_size") == check.batch  # not one retried at a smaller batch
    ]
    if not matching:
        asked = ", ".join(f"{key}={value}" for key, value in wanted.items())
        raise SasaBenchError(f"speed check {check.name!r}: no ok record of {model} with {asked}")
    return max(matching, key=lambda r: r.created)

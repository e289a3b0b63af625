"""Traced FLOP counters, one small adapter each, reported in one convention.

Counters and their native units (converted here, explicitly):
- `torch`: torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per MAC -> macs = flops / 2;
- `fvcore`: FlopCountAnalysis, 1 "flop" per MAC -> macs = count;
- `ptflops-aten`, `ptflops-pytorch`: get_model_complexity_info with each backend, MACs.
Every result carries `macs` and `flops = 2 x macs` (the paper's convention).

Handlers teach each counter what it would miss (see docs/counting.md): the SASA core is one op,
`sasa_bench::window_attention`, whatever backend computes it; the attention stem's einsums are
seen natively by the dispatch/trace counters and through module hooks by ptflops-pytorch.
Elementwise work (batch norm, ReLU, pooling, softmax) is excluded from every counter, as from
the analytic count. With `handlers=False` each counter runs as shipped, to show what it reports.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from sasa_bench.errors import SasaBenchError
from sasa_bench.kernels import window_attention_macs
from sasa_bench.layers.sasa import SASA2d
from sasa_bench.layers.stem import BLOCK, BlockAttention2d

COUNTERS = ("torch", "fvcore", "ptflops-aten", "ptflops-pytorch")
GROUPS = {"ptflops": ("ptflops-aten", "ptflops-pytorch"), "all": ("analytic", *COUNTERS)}
ELEMENTWISE_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


@dataclass
class CounterResult:
    counter: str
    macs: int | None = None  # None: the counter could not run (see note)
    layers: dict[str, int] = field(default_factory=dict)  # module name -> MACs, every level
    activations: int | None = None
    note: str | None = None

    @property
    def flops(self) -> int | None:
        return None if self.macs is None else 2 * self.macs


def parse_counters(text: str) -> list[str]:
    """'analytic,torch,ptflops' or 'all' -> the list of counter names, in order."""
    names: list[str] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        for name in GROUPS.get(item, (item,)):
            if name not in ("analytic", *COUNTERS):
                known = ", ".join(("analytic", *COUNTERS, *GROUPS))
                raise SasaBenchError(f"unknown counter {item!r}; known: {known}")
            if name not in names:
                names.append(name)
    return names


# -- the attention core's cost, from the shapes a counter sees ------------------------------
def _core_macs(q_shape, k_shape, rel_shape, kernel_size) -> int:
    return window_attention_macs(
        tuple(q_shape), k_shape is not None, rel_shape is not None, kernel_size
    )


def _block_core_macs(out_shape, mixtures: int | None) -> int:
    """Attention stem: q.k, q.r, attn.v over 16 keys; spatial values add the mixing."""
    batch, channels, height, width = out_shape
    macs = 3 * BLOCK * BLOCK * batch * channels * height * width
    return macs + (mixtures or 0) * batch * channels * height * width


# -- adapters ---------------------------------------------------------------------------------
def count_torch(model: nn.Module, x: torch.Tensor, handlers: bool = True) -> CounterResult:
    from torch.utils.flop_counter import FlopCounterMode

    def formula(
        q, k, v, rel, kernel_size, heads, impl, padding="zero", scale=1.0, out_shape=None, **_
    ):  # the op's arguments, as shapes; padding and scale change no multiply-add
        return 2 * _core_macs(q, k, rel, kernel_size)

    mapping = {torch.ops.sasa_bench.window_attention: formula} if handlers else {}
    with FlopCounterMode(display=False, custom_mapping=mapping) as mode, torch.no_grad():
        model(x)
    prefix = type(model).__name__ + "."
    layers = {
        name.removeprefix(prefix): sum(ops.values()) // 2
        for name, ops in mode.get_flop_counts().items()
        if name.startswith(prefix)
    }
    return CounterResult("torch", mode.get_total_flops() // 2, layers)


def count_fvcore(model: nn.Module, x: torch.Tensor, handlers: bool = True) -> CounterResult:
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis
    from fvcore.nn.jit_handles import get_shape

    def attention_handle(inputs, outputs):  # inputs: the op's nine arguments, as traced values
        kernel_size = inputs[4].toIValue()
        shapes = [None if v.type().kind() == "NoneType" else get_shape(v) for v in inputs[:4]]
        return _core_macs(shapes[0], shapes[1], shapes[3], kernel_size)

    def output_elements(inputs, outputs):
        return math.prod(get_shape(outputs[0]))

    def analysis(cls, extra):
        counter = cls(model, (x,))
        counter.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        counter.tracer_warnings("none")
        for name, handle in extra.items():
            counter.set_op_handle(name, handle)
        return counter

    op = "sasa_bench::window_attention"
    flop_handles = {}
    if handlers:  # fvcore counts these elementwise ops by default; the convention does not
        # (a None handle does not replace a default one in fvcore 0.1.5: count zero instead)
        flop_handles = {
            name: lambda inputs, outputs: 0
            for name in ("aten::batch_norm", "aten::adaptive_avg_pool2d")
        }
        flop_handles[op] = attention_handle
    with torch.no_grad():
        flops = analysis(FlopCountAnalysis, flop_handles)
        acts = analysis(ActivationCountAnalysis, {op: output_elements} if handlers else {})
        layers = {name: int(v) for name, v in flops.by_module().items() if name}
        total, activations = int(flops.total()), int(acts.total())
    return CounterResult("fvcore", total, layers, activations=activations)


def _ptflops_module_hooks() -> dict[type, Callable]:
    """ptflops counts a hooked module as a whole (it does not descend into its children), so
    each hook adds the module's own convolutions to its attention products."""

    def convs_macs(module: nn.Module, out_shape) -> int:
        batch, _, height, width = out_shape
        return sum(
            c.in_channels * c.out_channels * math.prod(c.kernel_size) * batch * height * width
            for c in module.modules()
            if isinstance(c, nn.Conv2d)
        )

    def sasa_hook(module: SASA2d, inputs, output):
        batch, _, height, width = inputs[0].shape
        q_shape = (batch, module.out_channels, height, width)
        module.__flops__ += convs_macs(module, q_shape) + window_attention_macs(
            q_shape, module.uses_keys, module.pos == "relative", module.kernel_size
        )

    def block_hook(module: BlockAttention2d, inputs, output):
        mixtures = getattr(module.value, "mixtures", None)
        module.__flops__ += convs_macs(module, output.shape) + _block_core_macs(
            output.shape, mixtures
        )

    return {SASA2d: sasa_hook, BlockAttention2d: block_hook}


def count_ptflops(
    model: nn.Module, x: torch.Tensor, backend: str, handlers: bool = True
) -> CounterResult:
    from ptflops import get_model_complexity_info

    hooks: dict = {}
    ignore: list = []
    config: dict = {}
    if handlers and backend == "aten":
        hooks = {torch.ops.sasa_bench.window_attention: _ptflops_aten_attention}
    elif handlers:
        hooks, ignore, config = (
            _ptflops_module_hooks(),
            list(ELEMENTWISE_MODULES),
            {
                "count_functional": False  # else torch.mul/add everywhere count as MACs
            },
        )
    log = io.StringIO()
    with contextlib.redirect_stdout(log), torch.no_grad():
        macs, _ = get_model_complexity_info(
            model,
            tuple(x.shape[1:]),
            as_strings=False,
            print_per_layer_stat=False,
            backend=backend,
            custom_modules_hooks=hooks,
            ignore_modules=ignore,
            backend_specific_config=config,
            ost=log,
        )
        if macs is None:
            raise SasaBenchError(f"ptflops ({backend}) failed: {log.getvalue().strip()[-300:]}")
        layers = (_ptflops_aten_layers if backend == "aten" else _ptflops_pytorch_layers)(
            model, x, hooks, ignore
        )
    return CounterResult(f"ptflops-{backend}", int(macs), layers)


def _ptflops_aten_attention(args, outputs) -> int:
    # (q, k, v, rel, kernel_size, heads, impl, padding, scale): padding and scale change no MAC
    q, k, _, rel, kernel_size = args[:5]
    return _core_macs(q.shape, k, rel, kernel_size)


def _ptflops_aten_layers(model, x, hooks, ignore) -> dict[str, int]:
    """Per module: ptflops' aten engine, entered and left around every named module (its
    public function only tracks the model's direct children)."""
    from ptflops.aten_engine import FlopCounterMode

    counter = FlopCounterMode(None, output_params={"print_params": {}}, custom_hooks=hooks)
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(counter.enter_module(name)))
            handles.append(module.register_forward_hook(counter.exit_module(name)))
    try:
        with counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: int(sum(ops.values()))
        for name, ops in counter.flop_counts.items()
        if name != "Global"
    }


def _ptflops_pytorch_layers(model, x, hooks, ignore) -> dict[str, int]:
    """Per module: the engine behind get_model_complexity_info, read before it is reset."""
    from ptflops import pytorch_engine as engine

    saved = engine.CUSTOM_MODULES_MAPPING
    engine.CUSTOM_MODULES_MAPPING = hooks
    counted = engine.add_flops_counting_methods(model)
    try:
        counted.start_flops_count(ost=io.StringIO(), verbose=False, ignore_list=ignore)
        counted(x)

        def accumulate(module: nn.Module) -> int:  # as ptflops sums: a counted module is whole
            if engine.is_supported_instance(module):
                return getattr(module, "__flops__", 0)
            return sum(accumulate(child) for child in module.children())

        return {name: int(accumulate(m)) for name, m in model.named_modules() if name}
    finally:
        counted.stop_flops_count()
        engine.CUSTOM_MODULES_MAPPING = saved


ADAPTERS: dict[str, Callable[..., CounterResult]] = {
    "torch": count_torch,
    "fvcore": count_fvcore,
    "ptflops-aten": lambda m, x, handlers=True: count_ptflops(m, x, "aten", handlers),
    "ptflops-pytorch": lambda m, x, handlers=True: count_ptflops(m, x, "pytorch", handlers),
}
LIBRARIES = {
    "torch": "torch",
    "fvcore": "fvcore",
    "ptflops-aten": "ptflops",
    "ptflops-pytorch": "ptflops",
}


def run_counter(
    name: str, model: nn.Module, x: torch.Tensor, handlers: bool = True
) -> CounterResult:
    """One counter on one input (batch 1 gives per-image counts); a missing library or a
    counter that fails gives a result with a note instead of an exception.

    The attention op is counted from its shapes, so its count does not depend on the backend.
    A backend that cannot run under a counter's tracing (eager FlexAttention's vmap fails inside
    a dispatch mode on CPU) is swapped for the reference backend for that count, with a note."""
    try:
        return ADAPTERS[name](model.eval(), x, handlers=handlers)
    except ImportError:
        return CounterResult(
            name,
            note=f"{LIBRARIES[name]} is not installed (pip install 'sasa-bench[counters]')",
        )
    except Exception as error:  # a third-party counter failing is a result, not a crash
        impls = {m.impl for m in model.modules() if isinstance(m, SASA2d)} - {"reference"}
        if impls:
            retry = _with_reference_attention(name, model, x, handlers)
            if retry.macs is not None:
                retry.note = (
                    f"counted with the reference attention: {', '.join(sorted(impls))} "
                    f"failed under {name} ({type(error).__name__})"
                )
                return retry
        return CounterResult(name, note=f"{name} failed: {type(error).__name__}: {error}")


def _with_reference_attention(name, model, x, handlers) -> CounterResult:
    layers = [m for m in model.modules() if isinstance(m, SASA2d)]
    saved = [m.impl for m in layers]
    for m in layers:
        m.impl = "reference"
    try:
        return run_counter(name, model, x, handlers)
    finally:
        for m, impl in zip(layers, saved, strict=True):
            m.impl = impl


def differs(counted: int, analytic: int, tolerance: float = 0.01) -> bool:
    """More than `tolerance` (relative) apart; any MACs where the analytic count has none."""
    return abs(counted - analytic) > tolerance * abs(analytic)


def add_counter_columns(rows: list[dict], results: dict[str, CounterResult]) -> None:
    """Give each cost row (keyed by module name) every counter's MACs for that module and the
    list of counters that differ from the analytic count by more than 1 %."""
    for row in rows:
        row["counters"] = {}
        row["differs"] = []
        for name, result in results.items():
            if result.macs is None:
                continue
            macs = result.layers.get(row["name"], 0)  # counters omit modules they saw no op in
            row["counters"][name] = macs
            if differs(macs, row["macs"]):
                row["differs"].append(name)

"""Traced FLOP counters, one small adapter each, reported in one convention.

Counters and their native units (converted here, explicitly):
- `torch`: torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per MAC -> macs = flops / 2;
- `fvcore`: FlopCountAnalysis, 1 "flop" per MAC -> macs = count;
- `ptflops-aten`, `ptflops-pytorch`: get_model_complexity_info with each backend, MACs.
Every result carries `macs` and `flops = 2 x macs` (the paper's convention).

Handlers teach each counter what it would miss (see docs/counting.md), keyed by op, each op
counted by one formula from its shapes (`OP_MACS`): the SASA core is one op,
`sasa_bench::window_attention`, whatever backend computes it; fused attention
(scaled_dot_product_attention) is counted as its q.k and attn.v products; ptflops-pytorch, which
counts modules by type, gets the matmuls, einsums, attention and functional convolutions that
run outside the modules it counts. Elementwise work (norms, activations, pooling, softmax, bias
additions) is excluded from every counter, as from the analytic count. With `handlers=False`
each counter runs as shipped, to show what it reports.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from sasa_bench.errors import SasaBenchError
from sasa_bench.kernels import window_attention_macs
from sasa_bench.layers.cost import LayerCost, ModelCost
from sasa_bench.layers.sasa import SASA2d
from sasa_bench.layers.stem import BLOCK, BlockAttention2d
from sasa_bench.models.resnet import IN_CHANNELS, model_cost
from sasa_bench.models.spec import ModelSpec
from sasa_bench.models.thirdparty import ThirdPartySpec, import_torchvision

COUNTERS = ("torch", "fvcore", "ptflops-aten", "ptflops-pytorch")
GROUPS = {"ptflops": ("ptflops-aten", "ptflops-pytorch"), "all": ("analytic", *COUNTERS)}
#: what fvcore counts by default beyond the convention's multiply-accumulates
FVCORE_ELEMENTWISE = (
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
    "aten::grid_sampler",
)  # fmt: skip
#: module types whose ptflops-pytorch hooks count multiply-accumulates; it ignores the others
#: (norms, activations, pooling, upsampling) and timm's ViT Attention, whose ptflops hook
#: counts the products but, being a counted module, drops its qkv and proj layers
PTFLOPS_MAC_MODULES = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.ConvTranspose3d, nn.Linear, nn.MultiheadAttention,
)  # fmt: skip


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


def matmul_macs(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    """a @ b with broadcasting (1-D operands as numpy treats them)."""
    a, b = list(a), list(b)
    if len(a) == 1:
        a = [1, *a]
    if len(b) == 1:
        b = [*b, 1]
    batch = torch.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return math.prod(batch) * a[-2] * a[-1] * b[-1]


def sdpa_macs(q: tuple[int, ...], k: tuple[int, ...], v: tuple[int, ...]) -> int:
    """scaled_dot_product_attention: q.k (L x S x E) and attn.v (L x S x Ev) per batch and
    head, whichever kernel computes it; the softmax and the scaling are not MACs."""
    return math.prod(q[:-1]) * k[-2] * (q[-1] + v[-1])


def einsum_macs(equation: str, shapes: list[tuple[int, ...]]) -> int:
    """The products torch.einsum computes, left to right: of each pair, one multiply-add per
    combination of the letters that survive (a letter in one operand only and not needed
    later is summed away first, as torch does: an addition, not a MAC); a pair that contracts
    no letter is an elementwise product (torch.mul), no MAC."""
    inputs, arrow, output = equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if not arrow:  # implicit output: the letters that appear once, in order
        output = "".join(sorted(c for c in set(inputs) if c.isalpha() and inputs.count(c) == 1))
    if "..." in equation:  # broadcast dimensions: digits stand for them, right-aligned
        dims = max(len(shape) - len(term) + 3 for term, shape in zip(terms, shapes, strict=True)
                   if "..." in term)  # fmt: skip
        ellipsis = "".join(str(d) for d in range(dims))
        terms = [
            t.replace("...", ellipsis[dims - (len(shape) - len(t) + 3) :])
            for t, shape in zip(terms, shapes, strict=True)
        ]
        output = (output if arrow else ellipsis + output).replace("...", ellipsis)
    sizes = {
        c: n
        for term, shape in zip(terms, shapes, strict=True)
        for c, n in zip(term, shape, strict=True)
    }
    macs, left = 0, terms[0]
    for index, right in enumerate(terms[1:], start=1):
        later = output + "".join(terms[index + 1 :])
        contracted = {c for c in left if c in right and c not in later}
        if contracted:  # without a contraction the pair is an elementwise product, no MAC
            kept = {c for c in left + right if c in later} | contracted
            macs += math.prod(sizes[c] for c in kept)
        left = "".join(c for c in dict.fromkeys(left + right) if c in later)
    return macs


def _arg(args: tuple, kwargs: dict, index: int, name: str):
    return args[index] if len(args) > index else kwargs.get(name)


def _conv_macs(out: torch.Tensor, args: tuple, kwargs: dict) -> int:
    weight = _arg(args, kwargs, 1, "weight")  # (out, in / groups, *kernel)
    return out.numel() * math.prod(weight.shape[1:])


def _linear_macs(out: torch.Tensor, args: tuple, kwargs: dict) -> int:
    return out.numel() * _arg(args, kwargs, 1, "weight").shape[-1]


def _pair_macs(first: int, second: int) -> Callable[[torch.Tensor, tuple, dict], int]:
    return lambda out, args, kwargs: matmul_macs(args[first].shape, args[second].shape)


def _sdpa_call_macs(out: torch.Tensor, args: tuple, kwargs: dict) -> int:
    q, k, v = (_arg(args, kwargs, i, name) for i, name in enumerate(("query", "key", "value")))
    return sdpa_macs(q.shape, k.shape, v.shape)


def _einsum_call_macs(out: torch.Tensor, args: tuple, kwargs: dict) -> int:
    operands = args[1:] if len(args) > 2 or not isinstance(args[1], (list, tuple)) else args[1]
    return einsum_macs(args[0], [tuple(t.shape) for t in operands])


#: Python-level tensor operations that multiply-accumulate, and their MACs (output, args,
#: kwargs): what a module-hook counter (ptflops-pytorch) cannot see outside its modules
OP_MACS: dict[Callable, Callable[[torch.Tensor, tuple, dict], int]] = {
    **dict.fromkeys(
        (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.mm, torch.Tensor.mm,
         torch.bmm, torch.Tensor.bmm),
        _pair_macs(0, 1),
    ),
    torch.Tensor.__rmatmul__: _pair_macs(1, 0),
    **dict.fromkeys(
        (torch.addmm, torch.Tensor.addmm, torch.baddbmm, torch.Tensor.baddbmm), _pair_macs(1, 2)
    ),
    torch.einsum: _einsum_call_macs,
    F.scaled_dot_product_attention: _sdpa_call_macs,
    F.linear: _linear_macs,
    **dict.fromkeys((F.conv1d, F.conv2d, F.conv3d), _conv_macs),
}  # fmt: skip

#: fused attention ops as dispatched (CPU, CUDA flash / efficient / cuDNN, other backends):
#: the first three arguments are q, k and v
SDPA_OPS = tuple(
    getattr(torch.ops.aten, name)
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    )
    if hasattr(torch.ops.aten, name)
)


# -- adapters ---------------------------------------------------------------------------------
def count_torch(model: nn.Module, x: torch.Tensor, handlers: bool = True) -> CounterResult:
    from torch.utils.flop_counter import FlopCounterMode, flop_registry

    def formula(
        q, k, v, rel, kernel_size, heads, impl, padding="zero", scale=1.0, out_shape=None, **_
    ):  # the op's arguments, as shapes; padding and scale change no multiply-add
        return 2 * _core_macs(q, k, rel, kernel_size)

    def sdpa_formula(q, k, v, *args, **kwargs):
        return 2 * sdpa_macs(q, k, v)

    mapping = {}
    if handlers:  # torch counts the CUDA fused attention ops, not the CPU ones
        mapping = {op: sdpa_formula for op in SDPA_OPS if op not in flop_registry}
        mapping[torch.ops.sasa_bench.window_attention] = formula
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

    def shapes(inputs, count):
        return [get_shape(v) for v in inputs[:count]]

    op = "sasa_bench::window_attention"
    flop_handles = {}
    if handlers:  # fvcore counts these elementwise ops by default; the convention does not
        # (a None handle does not replace a default one in fvcore 0.1.5: count zero instead)
        flop_handles = {name: lambda inputs, outputs: 0 for name in FVCORE_ELEMENTWISE}
        flop_handles[op] = attention_handle
        flop_handles["aten::scaled_dot_product_attention"] = lambda i, o: sdpa_macs(*shapes(i, 3))
        # fvcore's matmul takes the batch of the first operand; its einsum rounds to 4 digits
        flop_handles["aten::matmul"] = lambda i, o: matmul_macs(*shapes(i, 2))
        flop_handles["aten::einsum"] = lambda i, o: einsum_macs(
            i[0].toIValue(), [get_shape(v) for v in i[1].node().inputs()]
        )
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
    if importlib.util.find_spec("torchvision") is not None:
        import_torchvision()  # ptflops imports torchvision.ops where it is installed
    from ptflops import get_model_complexity_info

    if handlers and backend == "pytorch":
        layers = _ptflops_pytorch_counted(model, x)
        return CounterResult("ptflops-pytorch", layers.pop(""), layers)
    hooks = _ptflops_aten_hooks() if handlers and backend == "aten" else {}
    log = io.StringIO()  # ptflops prints its traceback on a failure: kept for the note
    with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), torch.no_grad():
        macs, _ = get_model_complexity_info(
            model,
            tuple(x.shape[1:]),
            as_strings=False,
            print_per_layer_stat=False,
            backend=backend,
            custom_modules_hooks=hooks,
            ost=log,
        )
        if macs is None:
            raise SasaBenchError(f"ptflops ({backend}) failed: {log.getvalue().strip()[-300:]}")
        layers = (_ptflops_aten_layers if backend == "aten" else _ptflops_pytorch_layers)(
            model, x, hooks
        )
    return CounterResult(f"ptflops-{backend}", int(macs), layers)


def _ptflops_aten_hooks() -> dict:
    """ptflops' aten formulas without their bias additions, plus the ops it does not know."""
    from ptflops.aten_ops import conv_flop_count

    aten = torch.ops.aten

    def conv(args, outputs) -> int:  # ptflops counts one MAC per output for a bias
        return conv_flop_count(args[0].shape, args[1].shape, outputs[0].shape, bool(args[6]))

    hooks = {op: lambda args, outputs: sdpa_macs(*(a.shape for a in args[:3])) for op in SDPA_OPS}
    hooks |= {
        torch.ops.sasa_bench.window_attention: _ptflops_aten_attention,
        aten.addmm: lambda args, outputs: matmul_macs(args[1].shape, args[2].shape),
        aten.baddbmm: lambda args, outputs: matmul_macs(args[1].shape, args[2].shape),
        aten.convolution: conv,
        aten._convolution: conv,
    }
    return hooks


def _ptflops_aten_attention(args, outputs) -> int:
    # (q, k, v, rel, kernel_size, heads, impl, padding, scale): padding and scale change no MAC
    q, k, _, rel, kernel_size = args[:5]
    return _core_macs(q.shape, k, rel, kernel_size)


def _ptflops_aten_layers(model, x, hooks) -> dict[str, int]:
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


def _ptflops_pytorch_layers(model, x, hooks) -> dict[str, int]:
    """Per module, as shipped: the engine behind get_model_complexity_info, read before it is
    reset (a counted module is whole, as ptflops sums)."""
    from ptflops import pytorch_engine as engine

    def accumulate(module: nn.Module) -> int:
        if engine.is_supported_instance(module):
            return getattr(module, "__flops__", 0)
        return sum(accumulate(child) for child in module.children())

    with _ptflops_engine(model, x, hooks, ignore=()):
        return {name: int(accumulate(m)) for name, m in model.named_modules() if name}


def _ptflops_pytorch_counted(model, x) -> dict[str, int]:
    """Per module ("" the model), with the handlers: ptflops' module hooks on the types that
    multiply-accumulate (conv, linear; bias additions taken out), sasa_bench's attention
    hooks, and every op of OP_MACS that runs outside those modules, counted by op
    (`_OpsOutsideModules`) for each module it runs in."""
    from ptflops import pytorch_engine as engine
    from ptflops.pytorch_ops import MODULES_MAPPING

    ignore = tuple(t for t in MODULES_MAPPING if t not in PTFLOPS_MAC_MODULES)
    hooks = {**_ptflops_bias_free_hooks(), **_ptflops_module_hooks()}

    def counted(module: nn.Module) -> bool:
        return engine.is_supported_instance(module) and type(module) not in ignore

    def accumulate(module: nn.Module) -> int:  # an ignored module's children still count
        if counted(module):
            return module.__flops__
        return sum(accumulate(child) for child in module.children())

    with _ptflops_engine(model, x, hooks, ignore, _OpsOutsideModules(model, counted)) as ops:
        return {name: int(accumulate(m) + ops.macs[m]) for name, m in model.named_modules()}


@contextlib.contextmanager
def _ptflops_engine(model, x, hooks, ignore, mode=None):
    """ptflops' module engine on `model`, run once on `x` (under `mode`), read in the block."""
    from ptflops import pytorch_engine as engine

    saved = engine.CUSTOM_MODULES_MAPPING
    engine.CUSTOM_MODULES_MAPPING = hooks
    counted = engine.add_flops_counting_methods(model)
    try:
        counted.start_flops_count(ost=io.StringIO(), verbose=False, ignore_list=list(ignore))
        with mode or contextlib.nullcontext(), torch.no_grad():
            counted(x)
        yield mode
    finally:
        counted.stop_flops_count()
        engine.CUSTOM_MODULES_MAPPING = saved
        if mode is not None:
            mode.remove()


def _ptflops_bias_free_hooks() -> dict[type, Callable]:
    """ptflops' own conv and linear hooks, less the bias additions they add (one MAC per
    output element)."""
    from ptflops.pytorch_ops import MODULES_MAPPING

    def without_bias(hook: Callable) -> Callable:
        def counted(module, inputs, output):
            hook(module, inputs, output)
            if module.bias is not None:
                module.__flops__ -= output.numel()

        return counted

    return {
        t: without_bias(MODULES_MAPPING[t]) for t in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
    }


class _OpsOutsideModules(TorchFunctionMode):
    """The MACs of OP_MACS operations that run outside every module `counted` accepts
    (Python `@`, einsum, scaled_dot_product_attention, F.conv2d of a conv subclass), added
    to every module running at the time (the model included)."""

    def __init__(self, model: nn.Module, counted: Callable[[nn.Module], bool]) -> None:
        super().__init__()
        self.counted = counted
        self.running: list[nn.Module] = []
        self.macs: defaultdict[nn.Module, int] = defaultdict(int)
        self.handles = []
        for module in model.modules():
            self.handles.append(module.register_forward_pre_hook(self._enter))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, module, inputs) -> None:
        self.running.append(module)

    def _leave(self, module, inputs, output) -> None:
        self.running.pop()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = OP_MACS.get(func)
        if formula is not None and not any(map(self.counted, self.running)):
            macs = formula(out, args, kwargs)
            for module in self.running:
                self.macs[module] += macs
        return out


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


# -- the cost of a model without an analytic count: traced ------------------------------------
#: the counter whose count stands in for the analytic one where there is none (exact on every
#: op of the convention, with the handlers; docs/counting.md)
REFERENCE = "torch"


def own_macs(model: nn.Module, result: CounterResult) -> dict[str, int]:
    """A counter's per-module totals -> each module's own MACs: its total less its children's
    (the ops that run in its own forward, such as a fused attention); "" is the model."""
    totals = {**result.layers, "": result.macs or 0}
    own = {}
    for name, module in model.named_modules():
        children = (f"{name}.{child}" if name else child for child, _ in module.named_children())
        own[name] = totals.get(name, 0) - sum(totals.get(child, 0) for child in children)
    return own


def _shapes(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[tuple, tuple]]:
    """Each module's first input and output shape for one image (batch dimension dropped)."""

    def first_tensor(value):
        if isinstance(value, torch.Tensor):
            return value
        values = value.values() if isinstance(value, dict) else value
        if isinstance(values, (list, tuple)) or isinstance(value, dict):
            return next((t for t in map(first_tensor, values) if t is not None), None)
        return None

    found: dict[str, tuple[tuple, tuple]] = {}

    def record(name):
        def hook(module, inputs, output):
            if name not in found:
                shapes = [first_tensor(v) for v in (inputs, output)]
                found[name] = tuple(tuple(t.shape[1:]) if t is not None else () for t in shapes)

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return found


def traced_cost(model: nn.Module, x: torch.Tensor, result: CounterResult) -> ModelCost:
    """A ModelCost from a traced count (batch 1): one row per module that computes MACs in its
    own forward or holds parameters of its own, in the order their forwards end; "" is the
    model itself (for instance a ViT's position table)."""
    own = own_macs(model, result)
    shapes = _shapes(model, x)
    order = {name: index for index, name in enumerate(shapes)}
    rows = []
    for name, module in model.named_modules():
        params = sum(p.numel() for p in module.parameters(recurse=False))
        if own[name] or params:
            in_shape, out_shape = shapes.get(name, ((), ()))
            rows.append(
                LayerCost(name, type(module).__name__, in_shape, out_shape, params, own[name])
            )
    rows.sort(key=lambda row: order.get(row.name, len(order)))
    return ModelCost(tuple(rows))


@functools.cache
def model_cost_of(spec: ModelSpec | ThirdPartySpec) -> ModelCost:
    """The analytic cost of sasa_bench's models; for a third-party model, which has none, the
    traced count of REFERENCE (with the handlers) at batch 1."""
    if not isinstance(spec, ThirdPartySpec):
        return model_cost(spec)
    torch.manual_seed(0)
    model = spec.build().eval()
    x = torch.randn(1, IN_CHANNELS, spec.resolution, spec.resolution)
    result = run_counter(REFERENCE, model, x)
    if result.macs is None:
        raise SasaBenchError(f"{spec.name} could not be counted: {result.note}")
    return traced_cost(model, x, result)


def cost_totals(spec: ModelSpec | ThirdPartySpec) -> dict[str, object]:
    """The cost as a record stores it; a traced one says so (`counted`)."""
    totals: dict[str, object] = dict(model_cost_of(spec).totals())
    if isinstance(spec, ThirdPartySpec):
        totals["counted"] = "traced: torch.utils.flop_counter with sasa_bench's handlers"
    return totals

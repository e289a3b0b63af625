"""Attention backends: interchangeable implementations of the SASA attention core.

A backend's forward has the signature of `reference.attention` and returns (out, lse).
`exact` backends compute Eq. 3 and must agree with the reference to rounding error, in both
border modes (`PADDINGS`):

- "zero": Eq. 3 as written over a zero-padded image. Positions outside the image are keys and
  values of zero that still enter the softmax, with logit q.r (q.k = 0 there), and add nothing
  to the output.
- "mask": positions outside the image are left out of the softmax (probability 0), as in
  tensor2tensor's local 2-D attention. The window's centre is always inside, so every query
  has at least one key.

Logits are multiplied by `scale` before the softmax: softmax(scale * (q.k + q.r)), the same as
scaling q. 1.0 is Eq. 3 as written; d**-0.5 (d the head dim) is tensor2tensor's convention.
Neither option changes the number of multiply-adds. A backend may bring its own backward;
otherwise its forward is recomputed under autograd.

Models call the core through one custom operator, `torch.ops.sasa_bench.window_attention`,
whatever the backend. To every tracer (FLOP counters, profilers, torch.compile) the attention is
then one named op with known shapes, so a counter needs one handler for it instead of one per
backend's internals. Without a fused backward, the op keeps only q, k, v and the embeddings and
recomputes the forward in the backward pass (activation checkpointing).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sasa_bench.errors import SasaBenchError, look_up

#: border modes of the window: "zero" (Eq. 3 over a zero-padded image) or "mask" (outside
#: positions excluded from the softmax)
PADDINGS = ("zero", "mask")

if not torch.cuda.is_available():
    # Triton kernels can only run in Triton's interpreter here. The flag must be set before
    # triton is first imported (torch imports it lazily): triton.language's own functions are
    # created interpreted or compiled at that moment.
    os.environ.setdefault("TRITON_INTERPRET", "1")


@dataclass(frozen=True)
class Backend:
    name: str
    module: str  # imported on first use: optional libraries stay optional
    exact: bool
    description: str
    forward_name: str = "attention"
    backward_name: str | None = None
    requires: str | None = None  # a library that must be importable
    extra: str | None = None  # the sasa-bench extra that installs it

    def load(self) -> tuple[Callable, Callable | None]:
        module = importlib.import_module(self.require().module)
        backward = getattr(module, self.backward_name) if self.backward_name else None
        return getattr(module, self.forward_name), backward

    def require(self) -> Backend:
        """This backend, checked to run here; a clear error naming what to install if not."""
        reason = self.unavailable()
        if reason:
            raise SasaBenchError(f"attention implementation {self.name!r}: {reason}")
        return self

    def unavailable(self) -> str | None:
        """Why this backend cannot run here, or None."""
        if self.requires is None:
            return None
        try:
            importlib.import_module(self.requires)
        except ImportError:
            return f"{self.requires} is not installed (pip install 'sasa-bench[{self.extra}]')"
        return None


BACKENDS: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        Backend(
            "reference",
            "sasa_bench.kernels.reference",
            exact=True,
            description="paper-faithful PyTorch loop over the k x k offsets (bounded memory)",
        ),
        Backend(
            "unfold",
            "sasa_bench.kernels.unfold",
            exact=True,
            description="k^2 unfolded keys and values, dense products (fast on small maps, k^2 "
            "memory; the usual reimplementation)",
        ),
        Backend(
            "flex",
            "sasa_bench.kernels.flex",
            exact=True,
            description="FlexAttention, 2-D window mask + q.r score_mod (compiled on CUDA)",
        ),
        Backend(
            "triton",
            "sasa_bench.kernels.triton_window",
            exact=True,
            forward_name="forward",
            backward_name="backward",
            requires="triton",
            extra="kernels",
            description="fused Triton forward/backward, online softmax (interpreter on CPU)",
        ),
    )
}


def get_backend(name: str) -> Backend:
    return look_up(BACKENDS, name, "attention implementation")


def usable_backend(name: str) -> Backend:
    """The backend `name`, checked to run here (its library importable): a clear error before
    any work starts otherwise."""
    return get_backend(name).require()


def is_masked(padding: str) -> bool:
    """Whether `padding` leaves positions outside the image out of the softmax ("mask") rather
    than zero-padding them ("zero"); ValueError for any other value."""
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; choose one of: {', '.join(PADDINGS)}")
    return padding == "mask"


def window_attention_macs(
    q_shape: tuple[int, ...], has_keys: bool, has_rel: bool, kernel_size: int
) -> int:
    """MACs of the core for q of shape (B, C, H, W): q.k, q.r and attn.v, k^2 x C per pixel each
    (whatever the padding mode and scale: masking and scaling the logits are elementwise)."""
    batch, channels, height, width = q_shape
    products = 1 + has_keys + has_rel
    return products * batch * channels * height * width * kernel_size**2


#: The op is defined through torch.library's Library, not `torch.library.custom_op`, whose
#: kernel wrapper imports torch._dynamo at the op's first call: about 2 s in every fresh
#: process, and the benchmarks start many.
OP = "sasa_bench::window_attention"
_LIBRARY = torch.library.Library("sasa_bench", "DEF")
_LIBRARY.define(
    "window_attention(Tensor q, Tensor? k, Tensor v, Tensor? rel, int kernel_size, int heads, "
    "str impl, str padding, float scale) -> (Tensor, Tensor)"
)


def _window_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor | None,
    v: torch.Tensor,
    rel: torch.Tensor | None,
    kernel_size: int,
    heads: int,
    impl: str,
    padding: str,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    forward, _ = get_backend(impl).load()
    with torch.no_grad():  # autograd of the op is _backward's business
        return forward(q, k, v, rel, kernel_size, heads, padding, scale)


_LIBRARY.impl("window_attention", _window_attention_forward, "CompositeExplicitAutograd")


@torch.library.register_fake(OP, lib=_LIBRARY)
def _(q, k, v, rel, kernel_size, heads, impl, padding, scale):
    batch, _, height, width = q.shape
    return torch.empty_like(q), q.new_empty(batch, heads, height, width, dtype=torch.float32)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, rel, ctx.kernel_size, ctx.heads, ctx.impl, ctx.padding, ctx.scale = inputs
    fused = get_backend(ctx.impl).backward_name is not None  # needs out and lse
    ctx.save_for_backward(q, k, v, rel, *(output if fused else (None, None)))


def _backward(ctx, grad: torch.Tensor, _grad_lse: torch.Tensor):
    q, k, v, rel, out, lse = ctx.saved_tensors
    forward, backward = get_backend(ctx.impl).load()
    needs = ctx.needs_input_grad[:4]
    options = (ctx.kernel_size, ctx.heads, ctx.padding, ctx.scale)
    untracked = (None,) * 5  # kernel_size, heads, impl, padding, scale
    if backward is not None:
        grads = backward(q, k, v, rel, out, lse, grad, *options)
        return (*(g if n else None for g, n in zip(grads, needs, strict=True)), *untracked)
    with torch.enable_grad():
        inputs = [None if t is None else t.detach().requires_grad_(True) for t in (q, k, v, rel)]
        recomputed, _ = forward(*inputs, *options)
        wanted = [t for t, n in zip(inputs, needs, strict=True) if t is not None and n]
        found = iter(
            torch.autograd.grad(recomputed, wanted, grad, allow_unused=True) if wanted else ()
        )
    grads = [
        next(found) if t is not None and n else None for t, n in zip(inputs, needs, strict=True)
    ]
    return (*grads, *untracked)


torch.library.register_autograd(OP, _backward, setup_context=_setup_context, lib=_LIBRARY)


def window_attention(
    q: torch.Tensor,
    k: torch.Tensor | None,
    v: torch.Tensor,
    rel: torch.Tensor | None,
    kernel_size: int,
    heads: int,
    impl: str = "reference",
    padding: str = "zero",
    scale: float = 1.0,
) -> torch.Tensor:
    """SASA attention core (Eq. 3; see `reference.attention`) computed by backend `impl`:
    softmax(scale * (q.k + q.r)) over each k x k window, the border zero-padded or masked
    (`PADDINGS`)."""
    is_masked(padding)  # a clear error before any backend runs
    op = torch.ops.sasa_bench.window_attention
    return op(q, k, v, rel, kernel_size, heads, impl, padding, float(scale))[0]

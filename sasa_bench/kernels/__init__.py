"""Attention backends: interchangeable implementations of the SASA attention core.

Every backend has the signature of `reference.attention`. `exact` backends compute Eq. 3 with
the paper's zero-padded border and must agree with the reference to rounding error.

Models call the core through one custom operator, `torch.ops.sasa_bench.window_attention`,
whatever the backend. To every tracer (FLOP counters, profilers, torch.compile) the attention is
then one named op with known shapes, so a counter needs one handler for it instead of one per
backend's internals. Its backward recomputes the backend's forward under autograd (activation
checkpointing): the op keeps only q, k, v and the embeddings for the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sasa_bench.errors import UnknownNameError
from sasa_bench.kernels import reference

AttentionFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Backend:
    name: str
    fn: AttentionFn
    exact: bool
    description: str


BACKENDS: dict[str, Backend] = {
    "reference": Backend(
        "reference",
        reference.attention,
        exact=True,
        description="paper-faithful PyTorch loop over the k x k offsets (bounded memory)",
    ),
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown attention implementation {name!r}; known: {', '.join(BACKENDS)}"
        ) from None


def window_attention_macs(
    q_shape: tuple[int, ...], has_keys: bool, has_rel: bool, kernel_size: int
) -> int:
    """MACs of the core for q of shape (B, C, H, W): q.k, q.r and attn.v, k^2 x C per pixel each."""
    batch, channels, height, width = q_shape
    products = 1 + has_keys + has_rel
    return products * batch * channels * height * width * kernel_size**2


@torch.library.custom_op("sasa_bench::window_attention", mutates_args=())
def window_attention(
    q: torch.Tensor,
    k: torch.Tensor | None,
    v: torch.Tensor,
    rel: torch.Tensor | None,
    kernel_size: int,
    heads: int,
    impl: str,
) -> torch.Tensor:
    """SASA attention core (see `reference.attention`), computed by backend `impl`."""
    return get_backend(impl).fn(q, k, v, rel, kernel_size, heads)


@window_attention.register_fake
def _(q, k, v, rel, kernel_size, heads, impl):
    return torch.empty_like(q)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, rel, ctx.kernel_size, ctx.heads, ctx.impl = inputs
    ctx.save_for_backward(q, k, v, rel)


def _backward(ctx, grad: torch.Tensor):
    tensors = ctx.saved_tensors
    with torch.enable_grad():
        inputs = [None if t is None else t.detach().requires_grad_(True) for t in tensors]
        out = get_backend(ctx.impl).fn(*inputs, ctx.kernel_size, ctx.heads)
        needed = [
            t for t, n in zip(inputs, ctx.needs_input_grad[:4], strict=True) if t is not None and n
        ]
        grads = iter(torch.autograd.grad(out, needed, grad) if needed else ())
    result = [
        next(grads) if t is not None and n else None
        for t, n in zip(inputs, ctx.needs_input_grad[:4], strict=True)
    ]
    return (*result, None, None, None)


window_attention.register_autograd(_backward, setup_context=_setup_context)

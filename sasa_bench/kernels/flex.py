"""SASA attention through PyTorch's FlexAttention: a 2-D window mask and a q.r score_mod.

Keys and values are the zero-padded image ((H+2p) x (W+2p) tokens), so padded positions take
part in the softmax exactly as in Eq. 3 (logit q.r, value 0). q.r is computed once per query
and offset (B, heads, H*W, k^2) and read by the score_mod. On CUDA flex_attention is compiled
(its kernels need a head dim of at least 16: smaller heads are zero-padded, which changes no
dot product); elsewhere it runs eagerly, materialising the scores (small shapes only).
Compiled kernels are specialised per shape; the dynamo recompile limit is raised so the many
layer shapes of a network do not fall back to eager.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _disable_current_modes

MIN_COMPILED_HEAD_DIM = 16


@functools.cache
def _flex_attention(device_type: str):
    from torch.nn.attention.flex_attention import flex_attention

    if device_type != "cuda":
        return flex_attention
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=64)
def _block_mask(height: int, width: int, kernel_size: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    padded_width = width + kernel_size - 1

    def window(b, h, q_idx, kv_idx):
        dy = kv_idx // padded_width - q_idx // width
        dx = kv_idx % padded_width - q_idx % width
        return (dy >= 0) & (dy < kernel_size) & (dx >= 0) & (dx < kernel_size)

    return create_block_mask(
        window,
        B=None,
        H=None,
        Q_LEN=height * width,
        KV_LEN=(height + kernel_size - 1) * padded_width,
        device=device,
    )


def attention(q, k, v, rel, kernel_size: int, heads: int):
    """(out, lse) for Eq. 3; same contract as `reference.attention`."""
    batch, channels, height, width = q.shape
    d = channels // heads
    pad = kernel_size // 2
    padded_width = width + 2 * pad

    def tokens(t: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) -> (B, heads, h*w, d)
        return t.reshape(batch, heads, d, -1).transpose(-1, -2)

    if not torch.is_grad_enabled():  # FlexAttention refuses grad-requiring inputs on CPU
        q, k, v, rel = (None if t is None else t.detach() for t in (q, k, v, rel))
    qt = tokens(q)
    kt = tokens(F.pad(k if k is not None else torch.zeros_like(q), (pad,) * 4))
    vt = tokens(F.pad(v, (pad,) * 4))
    qr = None
    if rel is not None:
        qr = torch.einsum("bhnd,hdo->bhno", qt, rel.to(q.dtype))

    def score_mod(score, b, h, q_idx, kv_idx):
        if qr is None:
            return score
        dy = (kv_idx // padded_width - q_idx // width).clamp(0, kernel_size - 1)
        dx = (kv_idx % padded_width - q_idx % width).clamp(0, kernel_size - 1)
        return score + qr[b, h, q_idx, dy * kernel_size + dx]

    if q.is_cuda and d < MIN_COMPILED_HEAD_DIM:
        extra = (0, MIN_COMPILED_HEAD_DIM - d)
        qt, kt, vt = (F.pad(t, extra) for t in (qt, kt, vt))
    # Run outside any active dispatch mode (a FLOP counter, a profiler): to them the attention
    # is the one sasa_bench op, and flex's vmap-based mask and eager paths fail under such modes.
    with _disable_current_modes():
        mask = _block_mask(height, width, kernel_size, str(q.device))
        out, lse = _flex_attention(q.device.type)(
            qt, kt, vt, score_mod=score_mod, block_mask=mask, scale=1.0, return_lse=True
        )
    out = out[..., :d].transpose(-1, -2).reshape(batch, channels, height, width)
    return out, lse.reshape(batch, heads, height, width).float()

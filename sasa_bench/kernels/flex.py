"""SASA attention through PyTorch's FlexAttention: a 2-D window mask and a q.r score_mod.

Keys and values are the zero-padded image ((H+2p) x (W+2p) tokens). With padding="zero" the
padded positions take part in the softmax exactly as in Eq. 3 (logit q.r, value 0); with
padding="mask" the block mask also requires the key to lie inside the image, so they are left
out. q.r is computed once per query and offset (B, heads, H*W, k^2), times the logit scale,
and read by the score_mod; FlexAttention applies the same scale to q.k. On CUDA flex_attention
is compiled (its kernels need a head dim of at least 16: smaller heads are zero-padded, which
changes no dot product); elsewhere it runs eagerly, materialising the scores (small shapes
only). Compiled kernels are specialised per shape; the dynamo recompile limit is raised so the
many layer shapes of a network do not fall back to eager. Where the compiled kernel's default
configuration does not fit the GPU's shared memory, smaller blocks are tried in turn
(`KERNEL_OPTIONS`), and the first that compiles is kept for that shape.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import _disable_current_modes

from sasa_bench.kernels import is_masked

MIN_COMPILED_HEAD_DIM = 16
#: FlexAttention kernel options tried in turn, where a configuration does not fit shared memory
KERNEL_OPTIONS = (
    None,
    {"BLOCK_M": 64, "BLOCK_N": 64, "num_stages": 1},
    {"BLOCK_M": 32, "BLOCK_N": 32, "num_stages": 1},
)
_WORKING_OPTIONS: dict[tuple, int] = {}  # shape and dtype -> index into KERNEL_OPTIONS


def _out_of_shared_memory(error: Exception) -> bool:
    text = f"{type(error).__name__}: {error}".lower()
    return any(
        sign in text
        for sign in ("outofresources", "out of resource", "shared memory", "no valid triton config")
    )


@functools.cache
def _lse_request() -> dict:
    """Ask for the log-sum-exp as this torch's FlexAttention wants (return_lse is deprecated)."""
    try:
        from torch.nn.attention.flex_attention import AuxRequest
    except ImportError:
        return {"return_lse": True}
    return {"return_aux": AuxRequest(lse=True)}


def _run(flex, key: tuple, *args, **kwargs):
    """flex(*args, **kwargs) with the first kernel options that fit, remembered per `key`."""
    index = _WORKING_OPTIONS.get(key, 0)
    while True:
        try:
            out, aux = flex(*args, kernel_options=KERNEL_OPTIONS[index], **kwargs, **_lse_request())
            break
        except Exception as error:
            if not _out_of_shared_memory(error) or index + 1 == len(KERNEL_OPTIONS):
                raise
            index += 1
    _WORKING_OPTIONS[key] = index
    return out, getattr(aux, "lse", aux)


@functools.cache
def _flex_attention(device_type: str):
    from torch.nn.attention.flex_attention import flex_attention

    if device_type != "cuda":
        return flex_attention
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    return torch.compile(flex_attention, dynamic=False)


@functools.lru_cache(maxsize=64)
def _block_mask(height: int, width: int, kernel_size: int, masked: bool, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    padded_width = width + kernel_size - 1
    pad = kernel_size // 2

    def window(b, h, q_idx, kv_idx):
        ky, kx = kv_idx // padded_width, kv_idx % padded_width
        dy = ky - q_idx // width
        dx = kx - q_idx % width
        near = (dy >= 0) & (dy < kernel_size) & (dx >= 0) & (dx < kernel_size)
        if not masked:
            return near
        return near & (ky >= pad) & (ky < height + pad) & (kx >= pad) & (kx < width + pad)

    return create_block_mask(
        window,
        B=None,
        H=None,
        Q_LEN=height * width,
        KV_LEN=(height + kernel_size - 1) * padded_width,
        device=device,
    )


def attention(q, k, v, rel, kernel_size: int, heads: int, padding="zero", scale=1.0):
    """(out, lse) for Eq. 3; same contract as `reference.attention`."""
    masked = is_masked(padding)
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
        if scale != 1.0:
            qr = qr * scale

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
        mask = _block_mask(height, width, kernel_size, masked, str(q.device))
        key = (tuple(qt.shape), kernel_size, qt.dtype, str(q.device), rel is not None, masked)
        out, lse = _run(
            _flex_attention(q.device.type),
            key,
            qt,
            kt,
            vt,
            score_mod=score_mod,
            block_mask=mask,
            scale=float(scale),
        )
    out = out[..., :d].transpose(-1, -2).reshape(batch, channels, height, width)
    return out, lse.reshape(batch, heads, height, width).float()

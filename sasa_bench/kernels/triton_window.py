"""Fused SASA attention in Triton: forward and backward, exact (zero-padded border, q.r).

Forward: one program per (image, head) x tile of BLOCK_Q query pixels. The k x k offsets are a
runtime loop (not unrolled: compile time stays seconds, not tens of seconds); for each offset the
key and value vectors are gathered (zero outside the image: the padded positions still enter the
softmax with logit q.r), and an online softmax accumulates the output in fp32. The log-sum-exp
per query is kept for the backward pass.

Backward, without atomics: a query-centric kernel computes dq and per-tile partial sums of the
relative-embedding gradient; a key-centric kernel computes dk and dv by visiting, for each key,
the k^2 queries whose window holds it.

Tensors are (B, C, H, W) with any strides (NCHW or channels-last); head h owns channels
[h*d, (h+1)*d). Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set
by `sasa_bench.kernels` when CUDA is absent): correct, slow, for tests.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_Q = 64


@triton.jit
def _offsets(pix, H, W):
    return pix // W, pix % W


@triton.jit
def _load_pixels(ptr, b, c, y, x, mask, sb, sc, sh, sw):
    """(BLOCK_Q, BLOCK_D) vectors of the pixels (y, x), channels c; zero where masked."""
    offs = b * sb + c[None, :] * sc + y[:, None] * sh + x[:, None] * sw
    return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _fwd_kernel(
    Q,
    K,
    V,
    R,
    OUT,
    LSE,
    sqb,
    sqc,
    sqh,
    sqw,
    skb,
    skc,
    skh,
    skw,
    svb,
    svc,
    svh,
    svw,
    sob,
    soc,
    soh,
    sow,
    srh,
    srd,
    sro,
    H,
    W,
    HEADS,
    D,
    KS: tl.constexpr,
    HAS_K: tl.constexpr,
    HAS_REL: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    b = pid_bh // HEADS
    h = pid_bh % HEADS
    pix = tl.program_id(1) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    valid = pix < H * W
    y, x = _offsets(pix, H, W)
    dd = tl.arange(0, BLOCK_D)
    dmask = dd < D
    c = h * D + dd
    q = _load_pixels(Q, b, c, y, x, valid[:, None] & dmask[None, :], sqb, sqc, sqh, sqw)
    m = tl.full([BLOCK_Q], float("-inf"), tl.float32)
    l_sum = tl.zeros([BLOCK_Q], tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    for o in range(KS * KS):
        ky = y + o // KS - KS // 2
        kx = x + o % KS - KS // 2
        inside = valid & (ky >= 0) & (ky < H) & (kx >= 0) & (kx < W)
        kv_mask = inside[:, None] & dmask[None, :]
        s = tl.zeros([BLOCK_Q], tl.float32)
        if HAS_K:
            k = _load_pixels(K, b, c, ky, kx, kv_mask, skb, skc, skh, skw)
            s += tl.sum(q * k, axis=1)
        if HAS_REL:
            r = tl.load(R + h * srh + dd * srd + o * sro, mask=dmask, other=0.0).to(tl.float32)
            s += tl.sum(q * r[None, :], axis=1)
        v = _load_pixels(V, b, c, ky, kx, kv_mask, svb, svc, svh, svw)
        m_new = tl.maximum(m, s)
        alpha = tl.exp(m - m_new)
        p = tl.exp(s - m_new)
        l_sum = l_sum * alpha + p
        acc = acc * alpha[:, None] + p[:, None] * v
        m = m_new
    out = acc / l_sum[:, None]
    offs = b * sob + c[None, :] * soc + y[:, None] * soh + x[:, None] * sow
    tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=valid[:, None] & dmask[None, :])
    tl.store(LSE + pid_bh * H * W + pix, m + tl.log(l_sum), mask=valid)


@triton.jit
def _bwd_q_kernel(
    Q,
    K,
    V,
    R,
    DO,
    LSE,
    DELTA,
    DQ,
    DR,
    sqb,
    sqc,
    sqh,
    sqw,
    skb,
    skc,
    skh,
    skw,
    svb,
    svc,
    svh,
    svw,
    sdb,
    sdc,
    sdh,
    sdw,
    srh,
    srd,
    sro,
    H,
    W,
    HEADS,
    D,
    N_TILES,
    KS: tl.constexpr,
    HAS_K: tl.constexpr,
    HAS_REL: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    tile = tl.program_id(1)
    b = pid_bh // HEADS
    h = pid_bh % HEADS
    pix = tile * BLOCK_Q + tl.arange(0, BLOCK_Q)
    valid = pix < H * W
    y, x = _offsets(pix, H, W)
    dd = tl.arange(0, BLOCK_D)
    dmask = dd < D
    c = h * D + dd
    qmask = valid[:, None] & dmask[None, :]
    q = _load_pixels(Q, b, c, y, x, qmask, sqb, sqc, sqh, sqw)
    do = _load_pixels(DO, b, c, y, x, qmask, sdb, sdc, sdh, sdw)
    lse = tl.load(LSE + pid_bh * H * W + pix, mask=valid, other=0.0)
    delta = tl.load(DELTA + pid_bh * H * W + pix, mask=valid, other=0.0)
    dq = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    for o in range(KS * KS):
        ky = y + o // KS - KS // 2
        kx = x + o % KS - KS // 2
        inside = valid & (ky >= 0) & (ky < H) & (kx >= 0) & (kx < W)
        kv_mask = inside[:, None] & dmask[None, :]
        key = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
        if HAS_K:
            key += _load_pixels(K, b, c, ky, kx, kv_mask, skb, skc, skh, skw)
        if HAS_REL:
            r = tl.load(R + h * srh + dd * srd + o * sro, mask=dmask, other=0.0).to(tl.float32)
            key += r[None, :]
        s = tl.sum(q * key, axis=1)
        p = tl.where(valid, tl.exp(s - lse), 0.0)
        v = _load_pixels(V, b, c, ky, kx, kv_mask, svb, svc, svh, svw)
        ds = p * (tl.sum(do * v, axis=1) - delta)
        dq += ds[:, None] * key
        if HAS_REL:
            dr = tl.sum(ds[:, None] * q, axis=0)
            tl.store(DR + ((pid_bh * N_TILES + tile) * KS * KS + o) * BLOCK_D + dd, dr)
    offs = b * sqb + c[None, :] * sqc + y[:, None] * sqh + x[:, None] * sqw
    tl.store(DQ + offs, dq.to(DQ.dtype.element_ty), mask=qmask)


@triton.jit
def _bwd_kv_kernel(
    Q,
    K,
    V,
    R,
    DO,
    LSE,
    DELTA,
    DK,
    DV,
    sqb,
    sqc,
    sqh,
    sqw,
    skb,
    skc,
    skh,
    skw,
    svb,
    svc,
    svh,
    svw,
    sdb,
    sdc,
    sdh,
    sdw,
    srh,
    srd,
    sro,
    H,
    W,
    HEADS,
    D,
    KS: tl.constexpr,
    HAS_K: tl.constexpr,
    HAS_REL: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    b = pid_bh // HEADS
    h = pid_bh % HEADS
    pix = tl.program_id(1) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    valid = pix < H * W
    ky, kx = _offsets(pix, H, W)
    dd = tl.arange(0, BLOCK_D)
    dmask = dd < D
    c = h * D + dd
    kmask = valid[:, None] & dmask[None, :]
    k = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    if HAS_K:
        k += _load_pixels(K, b, c, ky, kx, kmask, skb, skc, skh, skw)
    v = _load_pixels(V, b, c, ky, kx, kmask, svb, svc, svh, svw)
    dk = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_Q, BLOCK_D], tl.float32)
    for o in range(KS * KS):
        qy = ky - (o // KS - KS // 2)
        qx = kx - (o % KS - KS // 2)
        inside = valid & (qy >= 0) & (qy < H) & (qx >= 0) & (qx < W)
        qmask = inside[:, None] & dmask[None, :]
        q = _load_pixels(Q, b, c, qy, qx, qmask, sqb, sqc, sqh, sqw)
        do = _load_pixels(DO, b, c, qy, qx, qmask, sdb, sdc, sdh, sdw)
        qpix = qy * W + qx
        lse = tl.load(LSE + pid_bh * H * W + qpix, mask=inside, other=0.0)
        delta = tl.load(DELTA + pid_bh * H * W + qpix, mask=inside, other=0.0)
        key = k
        if HAS_REL:
            r = tl.load(R + h * srh + dd * srd + o * sro, mask=dmask, other=0.0).to(tl.float32)
            key = k + r[None, :]
        p = tl.where(inside, tl.exp(tl.sum(q * key, axis=1) - lse), 0.0)
        ds = p * (tl.sum(do * v, axis=1) - delta)
        dv += p[:, None] * do
        dk += ds[:, None] * q
    offs = b * skb + c[None, :] * skc + ky[:, None] * skh + kx[:, None] * skw
    if HAS_K:
        tl.store(DK + offs, dk.to(DK.dtype.element_ty), mask=kmask)
    offs = b * svb + c[None, :] * svc + ky[:, None] * svh + kx[:, None] * svw
    tl.store(DV + offs, dv.to(DV.dtype.element_ty), mask=kmask)


def _strides(t: torch.Tensor | None, like: torch.Tensor) -> tuple[int, ...]:
    return (t if t is not None else like).stride()


def _common(q, k, rel, kernel_size, heads):
    batch, channels, height, width = q.shape
    d = channels // heads
    block_d = max(triton.next_power_of_2(d), 2)
    rel_strides = rel.stride() if rel is not None else (0, 0, 0)
    grid = (batch * heads, triton.cdiv(height * width, BLOCK_Q))
    meta = dict(
        KS=kernel_size,
        HAS_K=k is not None,
        HAS_REL=rel is not None,
        BLOCK_Q=BLOCK_Q,
        BLOCK_D=block_d,
    )
    return d, rel_strides, grid, meta


def forward(q, k, v, rel, kernel_size: int, heads: int):
    """(out, lse): out like q, lse (B, heads, H, W) in fp32."""
    batch, _, height, width = q.shape
    d, rel_strides, grid, meta = _common(q, k, rel, kernel_size, heads)
    out = torch.empty_like(q)
    lse = torch.empty(batch, heads, height, width, device=q.device, dtype=torch.float32)
    _fwd_kernel[grid](
        q,
        k if k is not None else q,
        v,
        rel if rel is not None else q,
        out,
        lse,
        *q.stride(),
        *_strides(k, q),
        *v.stride(),
        *out.stride(),
        *rel_strides,
        height,
        width,
        heads,
        d,
        **meta,
    )
    return out, lse


def backward(q, k, v, rel, out, lse, grad, kernel_size: int, heads: int):
    """(dq, dk, dv, drel) for the forward above; dk/drel None where k/rel are None."""
    batch, channels, height, width = q.shape
    d, rel_strides, grid, meta = _common(q, k, rel, kernel_size, heads)
    grad = grad.contiguous(memory_format=_format(q))
    delta = (grad.float() * out.float()).reshape(batch, heads, d, height, width).sum(2)
    dq = torch.empty_like(q)
    dk = torch.empty_like(k) if k is not None else None
    dv = torch.empty_like(v)
    k_arg = k if k is not None else q
    rel_arg = rel if rel is not None else q
    partial = torch.zeros(
        (batch * heads, grid[1], kernel_size**2, meta["BLOCK_D"]) if rel is not None else (1,),
        device=q.device,
        dtype=torch.float32,
    )
    strides = (*q.stride(), *_strides(k, q), *v.stride(), *grad.stride(), *rel_strides)
    _bwd_q_kernel[grid](
        q,
        k_arg,
        v,
        rel_arg,
        grad,
        lse,
        delta,
        dq,
        partial,
        *strides,
        height,
        width,
        heads,
        d,
        grid[1],
        **meta,
    )
    _bwd_kv_kernel[grid](
        q,
        k_arg,
        v,
        rel_arg,
        grad,
        lse,
        delta,
        dk if dk is not None else dq,
        dv,
        *strides,
        height,
        width,
        heads,
        d,
        **meta,
    )
    drel = None
    if rel is not None:
        drel = partial.reshape(batch, heads, grid[1], kernel_size**2, -1).sum((0, 2))
        drel = drel[..., :d].transpose(1, 2).to(rel.dtype)  # (heads, d, k^2)
    return dq, dk, dv, drel


def _format(t: torch.Tensor) -> torch.memory_format:
    if (
        t.dim() == 4
        and t.is_contiguous(memory_format=torch.channels_last)
        and not t.is_contiguous()
    ):
        return torch.channels_last
    return torch.contiguous_format

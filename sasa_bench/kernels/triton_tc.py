"""SASA attention forward with the dot products on tensor cores (Triton); backward shared with
`triton_window`.

`triton_window`'s forward spends about 80 instructions per query and offset on CUDA cores:
the bf16 -> fp32 conversions, q.(k + r) and p.v run one channel at a time (docs/kernels.md). Here
they run as matrix products, and the softmax still takes only the k scores per window row.

- **Tiles.** A program takes a run of SEG = 16 query pixels in one image row, for one (image,
  head).
- **Window rows.** For each window row dy, the key and value pixels that run's windows touch form
  one segment of SEG + k - 1 pixels, padded to KEYS = 32. The kernel computes:
  - `S = q @ k_seg^T`, (16 x 32) on the tensor cores: every query against every key of the
    segment;
  - the k scores each query needs, which lie on k diagonals of S, taken out with `tl.gather`;
  - the q.r logits of all k^2 offsets, as one product `q @ R` (16 x k^2) before the loop; each
    row's k columns are gathered from it;
  - an online softmax in base 2 over those k scores (k exps per query per row, as in the CUDA-core
    kernel);
  - the probabilities scattered back to a (16 x 32) matrix `P` (a second gather; zero off the
    diagonals), and `acc += P @ v_seg` on the tensor cores.
- **Borders.** Keys outside the image load as zeros, so their logit is q.r, the paper's zero
  padding, as in every backend.
- **Precision.**
  - bf16/fp16 inputs go to the tensor cores as they are, with fp32 accumulation. P is rounded to
    the input dtype for `P @ v`, as FlashAttention does.
  - fp32 inputs use IEEE fp32 products (`input_precision="ieee"`, not tf32), so fp32 stays
    exact to about 1e-6.
- **Interpreter.** On CPU (Triton's interpreter, for tests) the products take their operands in
  fp32, because the interpreter's bf16 products are wrong. The values are the same; only the
  accumulation order differs.
- **Limits.** Head dims below 16 are padded to 16 (tensor-core products need 16). k must be at
  most 17, so that 16 + k - 1 keys fit in 32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sasa_bench.kernels import triton_window

SEG = 16  # query pixels per program: one row run; the M of the tensor-core products
KEYS = 32  # key pixels per window row, SEG + k - 1 padded
_SEG, _KEYS = tl.constexpr(SEG), tl.constexpr(KEYS)
LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)


@triton.jit
def _mm(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """a @ b with fp32 accumulation. UPCAST (Triton's interpreter, whose bf16 products are
    wrong) multiplies the same values in fp32."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _fwd_tc_kernel(
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
    H,
    W,
    HEADS,
    D: tl.constexpr,
    KS: tl.constexpr,
    HAS_K: tl.constexpr,
    HAS_REL: tl.constexpr,
    BLOCK_D: tl.constexpr,
    OFFS: tl.constexpr,  # next power of 2 >= KS: gathered scores per window row
    ALL_OFFS: tl.constexpr,  # next power of 2 >= KS * KS: q.r logits of the whole window
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    pid_bh = tl.program_id(0)
    b = pid_bh // HEADS
    h = pid_bh % HEADS
    segments = tl.cdiv(W, _SEG)
    y = tl.program_id(1) // segments
    x0 = (tl.program_id(1) % segments) * _SEG
    i = tl.arange(0, _SEG)
    xq = x0 + i
    q_ok = xq < W
    dd = tl.arange(0, BLOCK_D)
    dmask = dd < D
    c = h * D + dd
    q_mask = q_ok[:, None] & dmask[None, :]
    q = tl.load(Q + b * sqb + c[None, :] * sqc + y * sqh + xq[:, None] * sqw, mask=q_mask, other=0)
    # key pixels of the segment: columns x0 - k//2 ... x0 + _SEG + k//2 - 1
    j = tl.arange(0, _KEYS)
    xk = x0 - KS // 2 + j
    k_col_ok = (xk >= 0) & (xk < W) & (j < _SEG + KS - 1)
    k_ptr = K + b * skb + c[None, :] * skc + xk[:, None] * skw
    v_ptr = V + b * svb + c[None, :] * svc + xk[:, None] * svw
    # query i's k scores of a window row are S[i, i + dx], dx < k
    dx = tl.arange(0, OFFS)
    diagonal = i[:, None] + dx[None, :]
    dx_ok = dx < KS
    # and back: column j of P holds query i's probability of offset j - i
    back = j[None, :] - i[:, None]
    back_ok = (back >= 0) & (back < KS)
    back_index = tl.where(back_ok, back, 0)
    if HAS_REL:  # q.r of every offset at once: (_SEG, ALL_OFFS), offset o = dy * k + dx
        o = tl.arange(0, ALL_OFFS)
        r = tl.load(
            R + h * KS * KS * D + o[None, :] * D + dd[:, None],
            mask=(o < KS * KS)[None, :] & dmask[:, None],
            other=0.0,
        )
        qr = tl.dot(q.to(tl.float32), r, input_precision="ieee")
    m = tl.full([_SEG], float("-inf"), tl.float32)
    l_sum = tl.zeros([_SEG], tl.float32)
    acc = tl.zeros([_SEG, BLOCK_D], tl.float32)
    for dy in range(KS):
        ky = y + dy - KS // 2
        ky_j = j * 0 + ky  # as a vector: masks stay vectors of booleans
        kv_mask = (k_col_ok & (ky_j >= 0) & (ky_j < H))[:, None] & dmask[None, :]
        v = tl.load(v_ptr + ky * svh, mask=kv_mask, other=0)
        if HAS_K:
            k = tl.load(k_ptr + ky * skh, mask=kv_mask, other=0)
            scores = _mm(q, tl.trans(k), PRECISION, UPCAST)  # (_SEG, _KEYS)
            s = tl.gather(scores, diagonal, axis=1)  # (_SEG, OFFS)
            if HAS_REL:
                s += tl.gather(qr, dy * KS + tl.where(dx_ok, dx, 0)[None, :] + 0 * i[:, None], 1)
        else:
            s = tl.gather(qr, dy * KS + tl.where(dx_ok, dx, 0)[None, :] + 0 * i[:, None], 1)
        s = tl.where(dx_ok[None, :], s * LOG2E, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_sum = l_sum * alpha + tl.sum(p, axis=1)
        dense = tl.where(back_ok, tl.gather(p, back_index, axis=1), 0.0)  # (_SEG, _KEYS)
        acc = acc * alpha[:, None] + _mm(dense.to(v.dtype), v, PRECISION, UPCAST)
        m = m_new
    out = acc / l_sum[:, None]
    o_ptr = OUT + b * sob + c[None, :] * soc + y * soh + xq[:, None] * sow
    tl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=q_mask)
    tl.store(LSE + pid_bh * H * W + y * W + xq, (m + tl.log2(l_sum)) * LN2, mask=q_ok)


def forward(q, k, v, rel, kernel_size: int, heads: int):
    """(out, lse) as `triton_window.forward`, the products on tensor cores."""
    if kernel_size + SEG - 1 > KEYS:
        raise ValueError(f"triton_tc takes windows up to {KEYS - SEG + 1}, not {kernel_size}")
    if k is None and rel is None:
        raise ValueError("triton_tc needs keys or relative embeddings")
    batch, channels, height, width = q.shape
    d = channels // heads
    out = triton_window._empty_like(q)
    lse = torch.empty(batch, heads, height, width, device=q.device, dtype=torch.float32)
    grid = (batch * heads, height * triton.cdiv(width, SEG))
    args = (
        q,
        k if k is not None else q,
        v,
        triton_window._rel(rel, q),
        out,
        lse,
        *q.stride(),
        *(k if k is not None else q).stride(),
        *v.stride(),
        *out.stride(),
        height,
        width,
        heads,
        d,
    )
    meta = dict(
        KS=kernel_size,
        HAS_K=k is not None,
        HAS_REL=rel is not None,
        BLOCK_D=max(16, triton.next_power_of_2(d)),
        OFFS=triton.next_power_of_2(kernel_size),
        ALL_OFFS=max(16, triton.next_power_of_2(kernel_size**2)),
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        UPCAST=not q.is_cuda,
    )
    _launch(_fwd_tc_kernel, grid, args, meta)
    return out, lse


def _launch(kernel, grid, args, meta) -> None:
    """One launch (a seam: `sasa_bench.kernels.sass` records it instead, to compile it)."""
    kernel[grid](*args, **meta, num_warps=1)


backward = triton_window.backward

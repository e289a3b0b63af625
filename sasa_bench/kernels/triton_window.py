"""Fused SASA attention in Triton: forward and backward, exact (zero or masked border, q.r).

Forward: one program per (image, head) x 2-D tile of TILE_H x TILE_W query pixels. A square
tile touches (TILE_H + k - 1) x (TILE_W + k - 1) key pixels, against k x (BLOCK + k - 1) for a
raster run of BLOCK pixels, so neighbouring offsets hit the caches. The window's rows are a
runtime loop and its columns an unrolled one (k independent loads in flight per row; compile
time stays seconds, where a fully unrolled k x k loop takes tens). For each offset the key and
value vectors are gathered (zero outside the image). With padding="zero" (MASK off) the padded
positions still enter the softmax with logit q.r; with padding="mask" (MASK on) their logits are
a large finite negative number (not -inf: the online softmax's exp2(m - m_new) stays a number),
so their probability is 0. The logit scale (SCALE, a runtime float) is folded into the log2(e)
factor of q. An online softmax accumulates the output in fp32. The log-sum-exp per query is kept
for the backward pass.

The head dim is a compile-time constant and the embeddings are stored offset-major, so with
channels-last q/k/v (the models' layout on a GPU) every load is a 16-byte vector and reductions
over channels stay inside a thread: `sasa-bench kernels --sass` shows this in the sm_90 machine
code, compiled without a GPU. On CUDA the tile shape and the warps per program are autotuned
per feature-map shape, head dim and layout (the first call at a new shape times every candidate
that fits the registers; SASA_TRITON_AUTOTUNE=0 skips this); the candidates include the 1 x 64
raster tile of the first version of this kernel.

Backward, without atomics: a query-centric kernel computes delta = do . out per query, dq, and
per-tile partial sums of the relative-embedding gradient (masked positions: probability 0);
then a key-centric kernel computes dk and dv by visiting, for each key, the k^2 queries whose
window holds it (real keys only, so it needs no mask). The scale multiplies dq, dk and the
embedding gradient once per pixel, outside the window loops.

Tensors are (B, C, H, W) with any strides (NCHW or channels-last); head h owns channels
[h*d, (h+1)*d). Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set
by `sasa_bench.kernels` when CUDA is absent): correct, slow, for tests.
"""

from __future__ import annotations

import inspect
import os

import torch
import triton
import triton.language as tl

from sasa_bench.kernels import is_masked

#: (TILE_H, TILE_W, num_warps) the autotuner chooses from on CUDA, pruned per head dim by
#: `fits`. With channels-last bf16 a thread loads 16 bytes of one pixel, so at d = 8 a tile of
#: 32 x num_warps pixels gives every thread its own pixel; (1, 64, 4) is the first version's
#: raster tile.
TILES = (
    (8, 8, 2),
    (4, 16, 2),
    (8, 16, 4),
    (16, 8, 4),
    (16, 16, 8),
    (8, 8, 4),
    (4, 8, 2),
    (4, 8, 4),
    (8, 8, 8),
    (2, 8, 4),
    (4, 8, 8),
    (1, 64, 4),
)
#: the one configuration used where there is no autotuning (Triton's interpreter on CPU)
DEFAULT_TILE = (8, 8, 4)
#: the query-side backward's tiles, largest first: its per-tile embedding partials fix the grid,
#: so the tile follows the head dim (`q_tile`) and only the warps are tuned
Q_TILES = ((16, 16), (8, 16), (8, 8), (4, 8))
#: most fp32 elements of one (pixels, d) tensor per thread before registers spill (read off the
#: sm_90 machine code, `sasa-bench kernels --sass`): the backward keys/values kernel holds four
#: such tensors, the others two or three
BUDGET = {"_fwd_kernel": 16, "_bwd_q_kernel": 16, "_bwd_kv_kernel": 8}


def per_thread(tile: tuple[int, int, int], head_dim: int) -> float:
    """fp32 elements of one (pixels, d) tensor per thread of a (TILE_H, TILE_W, num_warps) tile."""
    tile_h, tile_w, warps = tile
    return tile_h * tile_w * triton.next_power_of_2(head_dim) / (32 * warps)


def fits(tile: tuple[int, int, int], head_dim: int, budget: int) -> bool:
    """Whether the tile spreads one (pixels, d) fp32 tensor over its threads at 4 to `budget`
    elements each: fewer leaves threads computing the same pixel, more spills registers."""
    return 4 <= per_thread(tile, head_dim) <= budget


LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
#: the logit of a masked position, in base 2: exp2 of it (minus any real logit) is 0
MASKED = tl.constexpr(-1e30)


@triton.jit
def _tile_pixels(tile, H, W, TILE_H: tl.constexpr, TILE_W: tl.constexpr):
    """Row, column and validity of the TILE_H x TILE_W pixels of 2-D tile number `tile`."""
    tiles_w = tl.cdiv(W, TILE_W)
    i = tl.arange(0, TILE_H * TILE_W)
    y = (tile // tiles_w) * TILE_H + i // TILE_W
    x = (tile % tiles_w) * TILE_W + i % TILE_W
    return y, x, (y < H) & (x < W)


@triton.jit
def _program(H, W, HEADS, D: tl.constexpr, BLOCK_D, TILE_H: tl.constexpr, TILE_W: tl.constexpr):
    """This program's (image, head) row, image b, head h, tile pixels (y, x, valid), and its
    head's channels c with their mask."""
    pid_bh = tl.program_id(0)
    y, x, valid = _tile_pixels(tl.program_id(1), H, W, TILE_H, TILE_W)
    dd = tl.arange(0, BLOCK_D)
    h = pid_bh % HEADS
    return pid_bh, pid_bh // HEADS, h, y, x, valid, dd, dd < D, h * D + dd


@triton.jit
def _pixels(ptr, b, c, y, x, sb, sc, sh, sw):
    """(TILE_H * TILE_W, BLOCK_D) pointers to the pixels (y, x), channels c, of image b."""
    return ptr + b * sb + c[None, :] * sc + y[:, None] * sh + x[:, None] * sw


@triton.jit
def _load_pixels(ptr, b, c, y, x, mask, sb, sc, sh, sw):
    """(TILE_H * TILE_W, BLOCK_D) vectors of the pixels (y, x), channels c; zero where masked."""
    return tl.load(_pixels(ptr, b, c, y, x, sb, sc, sh, sw), mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _key(k_ptr, r_ptr, kv_mask, dmask, HAS_K: tl.constexpr, HAS_REL: tl.constexpr):
    """k + r of one offset in fp32 (k alone, or r alone broadcast over the pixels)."""
    if HAS_K:
        key = tl.load(k_ptr, mask=kv_mask, other=0.0).to(tl.float32)
        if HAS_REL:
            key += tl.load(r_ptr, mask=dmask, other=0.0)[None, :]
    else:
        key = tl.load(r_ptr, mask=dmask, other=0.0)[None, :]
    return key


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
    H,
    W,
    HEADS,
    D: tl.constexpr,
    SCALE,
    KS: tl.constexpr,
    HAS_K: tl.constexpr,
    HAS_REL: tl.constexpr,
    MASK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
):
    pid_bh, b, h, y, x, valid, dd, dmask, c = _program(H, W, HEADS, D, BLOCK_D, TILE_H, TILE_W)
    # logits in base 2 (exp2 is the hardware's exponential): q scaled by log2(e) x SCALE once
    qmask = valid[:, None] & dmask[None, :]
    q = _load_pixels(Q, b, c, y, x, qmask, sqb, sqc, sqh, sqw) * (LOG2E * SCALE)
    # each offset's key/value pointers are the query pixel's plus one scalar per offset
    k_ptr = _pixels(K, b, c, y, x, skb, skc, skh, skw)
    v_ptr = _pixels(V, b, c, y, x, svb, svc, svh, svw)
    r_ptr = R + h * KS * KS * D + dd
    m = tl.full([TILE_H * TILE_W], float("-inf"), tl.float32)
    l_sum = tl.zeros([TILE_H * TILE_W], tl.float32)
    acc = tl.zeros([TILE_H * TILE_W, BLOCK_D], tl.float32)
    for dy in range(KS):
        oy = dy - KS // 2
        row_inside = valid & (y >= -oy) & (y < H - oy)
        for dx in tl.static_range(KS):
            ox = dx - KS // 2
            inside = row_inside & (x >= -ox) & (x < W - ox)
            kv_mask = inside[:, None] & dmask[None, :]
            key = _key(
                k_ptr + (oy * skh + ox * skw),
                r_ptr + (dy * KS + dx) * D,
                kv_mask,
                dmask,
                HAS_K,
                HAS_REL,
            )
            s = tl.sum(q * key, axis=1)
            if MASK:
                s = tl.where(inside, s, MASKED)
            v = tl.load(v_ptr + (oy * svh + ox * svw), mask=kv_mask, other=0.0).to(tl.float32)
            m_new = tl.maximum(m, s)
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(s - m_new)
            l_sum = l_sum * alpha + p
            acc = acc * alpha[:, None] + p[:, None] * v
            m = m_new
    out = acc / l_sum[:, None]
    o_ptr = _pixels(OUT, b, c, y, x, sob, soc, soh, sow)
    tl.store(o_ptr, out.to(OUT.dtype.element_ty), mask=valid[:, None] & dmask[None, :])
    lse = (m + tl.log2(l_sum)) * LN2  # back to natural log for the backward
    tl.store(LSE + pid_bh * H * W + y * W + x, lse, mask=valid)


@triton.jit
def _bwd_q_kernel(
    Q,
    K,
    V,
    R,
    DO,
    OUT,
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
    sob,
    soc,
    soh,
    sow,
    sgb,
    sgc,
    sgh,
    sgw,
    H,
    W,
    HEADS,
    D: tl.constexpr,
    N_TILES,
    SCALE,
    KS: tl.constexpr,
    HAS_K: tl.constexpr,
    HAS_REL: tl.constexpr,
    MASK: tl.constexpr,
    BLOCK_D: tl.constexpr,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
):
    pid_bh, b, h, y, x, valid, dd, dmask, c = _program(H, W, HEADS, D, BLOCK_D, TILE_H, TILE_W)
    tile = tl.program_id(1)
    qmask = valid[:, None] & dmask[None, :]
    q = _load_pixels(Q, b, c, y, x, qmask, sqb, sqc, sqh, sqw)
    do = _load_pixels(DO, b, c, y, x, qmask, sdb, sdc, sdh, sdw)
    pix = pid_bh * H * W + y * W + x
    lse = tl.load(LSE + pix, mask=valid, other=0.0) * LOG2E  # base 2, as the logits below
    # delta = do . out per query, for this kernel and (through DELTA) the key-side one after it
    delta = tl.sum(do * _load_pixels(OUT, b, c, y, x, qmask, sob, soc, soh, sow), axis=1)
    tl.store(DELTA + pix, delta, mask=valid)
    q2 = q * (LOG2E * SCALE)
    # gradient of the unscaled logit = SCALE x that of the scaled one: dq and d rel carry it,
    # dq once at the end, d rel through q
    q = q * SCALE
    k_ptr = _pixels(K, b, c, y, x, skb, skc, skh, skw)
    v_ptr = _pixels(V, b, c, y, x, svb, svc, svh, svw)
    r_ptr = R + h * KS * KS * D + dd
    dr_ptr = DR + (pid_bh * N_TILES + tile) * KS * KS * BLOCK_D + dd
    dq = tl.zeros([TILE_H * TILE_W, BLOCK_D], tl.float32)
    for dy in range(KS):
        oy = dy - KS // 2
        row_inside = valid & (y >= -oy) & (y < H - oy)
        for dx in tl.static_range(KS):
            ox = dx - KS // 2
            inside = row_inside & (x >= -ox) & (x < W - ox)
            kv_mask = inside[:, None] & dmask[None, :]
            key = _key(
                k_ptr + (oy * skh + ox * skw),
                r_ptr + (dy * KS + dx) * D,
                kv_mask,
                dmask,
                HAS_K,
                HAS_REL,
            )
            if MASK:  # masked positions: probability 0, no gradient
                p = tl.where(inside, tl.exp2(tl.sum(q2 * key, axis=1) - lse), 0.0)
            else:
                p = tl.where(valid, tl.exp2(tl.sum(q2 * key, axis=1) - lse), 0.0)
            v = tl.load(v_ptr + (oy * svh + ox * svw), mask=kv_mask, other=0.0).to(tl.float32)
            ds = p * (tl.sum(do * v, axis=1) - delta)
            dq += ds[:, None] * key
            if HAS_REL:
                tl.store(dr_ptr + (dy * KS + dx) * BLOCK_D, tl.sum(ds[:, None] * q, axis=0))
    dq = dq * SCALE
    tl.store(_pixels(DQ, b, c, y, x, sgb, sgc, sgh, sgw), dq.to(DQ.dtype.element_ty), mask=qmask)


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
    sgb,
    sgc,
    sgh,
    sgw,
    H,
    W,
    HEADS,
    D: tl.constexpr,
    SCALE,
    KS: tl.constexpr,
    HAS_K: tl.constexpr,
    HAS_REL: tl.constexpr,
    MASK: tl.constexpr,  # unused: this kernel visits real keys only
    BLOCK_D: tl.constexpr,
    TILE_H: tl.constexpr,
    TILE_W: tl.constexpr,
):
    pid_bh, b, h, ky, kx, valid, dd, dmask, c = _program(H, W, HEADS, D, BLOCK_D, TILE_H, TILE_W)
    kmask = valid[:, None] & dmask[None, :]
    if HAS_K:
        k = _load_pixels(K, b, c, ky, kx, kmask, skb, skc, skh, skw)
    else:
        k = tl.zeros([TILE_H * TILE_W, BLOCK_D], tl.float32)
    v = _load_pixels(V, b, c, ky, kx, kmask, svb, svc, svh, svw)
    # the queries whose window holds this key: pixel (ky - oy, kx - ox) for offset (oy, ox)
    q_ptr = _pixels(Q, b, c, ky, kx, sqb, sqc, sqh, sqw)
    do_ptr = _pixels(DO, b, c, ky, kx, sdb, sdc, sdh, sdw)
    stat = pid_bh * H * W + ky * W + kx  # per-query statistics (lse, delta), same shift
    r_ptr = R + h * KS * KS * D + dd
    dk = tl.zeros([TILE_H * TILE_W, BLOCK_D], tl.float32)
    dv = tl.zeros([TILE_H * TILE_W, BLOCK_D], tl.float32)
    for dy in range(KS):
        oy = dy - KS // 2
        row_inside = valid & (ky >= oy) & (ky < H + oy)
        for dx in tl.static_range(KS):
            ox = dx - KS // 2
            inside = row_inside & (kx >= ox) & (kx < W + ox)
            qmask = inside[:, None] & dmask[None, :]
            q = tl.load(q_ptr - (oy * sqh + ox * sqw), mask=qmask, other=0.0).to(tl.float32)
            do = tl.load(do_ptr - (oy * sdh + ox * sdw), mask=qmask, other=0.0).to(tl.float32)
            lse = tl.load(LSE + stat - (oy * W + ox), mask=inside, other=0.0)
            delta = tl.load(DELTA + stat - (oy * W + ox), mask=inside, other=0.0)
            if HAS_REL:
                key = k + tl.load(r_ptr + (dy * KS + dx) * D, mask=dmask, other=0.0)[None, :]
            else:
                key = k
            s = tl.sum(q * key, axis=1) * (LOG2E * SCALE)
            p = tl.where(inside, tl.exp2(s - lse * LOG2E), 0.0)
            ds = p * (tl.sum(do * v, axis=1) - delta)
            dv += p[:, None] * do
            dk += ds[:, None] * q
    # dk and dv share one layout (sg*): the caller allocates them alike
    if HAS_K:
        dk = dk * SCALE
        dk_ptr = _pixels(DK, b, c, ky, kx, sgb, sgc, sgh, sgw)
        tl.store(dk_ptr, dk.to(DK.dtype.element_ty), mask=kmask)
    dv_ptr = _pixels(DV, b, c, ky, kx, sgb, sgc, sgh, sgw)
    tl.store(dv_ptr, dv.to(DV.dtype.element_ty), mask=kmask)


def _strides(t: torch.Tensor | None, like: torch.Tensor) -> tuple[int, ...]:
    return (t if t is not None else like).stride()


def _config(tile_h: int, tile_w: int, num_warps: int) -> triton.Config:
    return triton.Config({"TILE_H": tile_h, "TILE_W": tile_w}, num_warps=num_warps)


def _name(kernel) -> str:
    return kernel.__name__ if hasattr(kernel, "__name__") else kernel.fn.__name__


def q_tile(head_dim: int) -> tuple[int, int]:
    """The query-side backward's tile at this head dim: the largest that 8 warps hold at <= 16
    elements per thread. Its d rel reduction runs per tile and offset, so two pixels per thread
    halve its cost per pixel (about 25-30% fewer instructions per query and offset at d = 8 and
    16 than 8x8 tiles, read off the sm_90 code) and the partials shrink with the tile count."""
    for tile in Q_TILES:
        if per_thread((*tile, 8), head_dim) <= 16:
            return tile
    return Q_TILES[-1]


def _all_tiles(kernel, head_dim: int | None = None) -> list[tuple[int, int, int]]:
    if _name(kernel) != "_bwd_q_kernel":
        return list(TILES)
    shapes = Q_TILES if head_dim is None else (q_tile(head_dim),)
    return [(*shape, w) for shape in shapes for w in (2, 4, 8)]


def candidates(kernel, head_dim: int) -> list[tuple[int, int, int]]:
    """The tiles the autotuner times for `kernel` at this head dim; where none fits (head dims
    outside the models' 8-64), the one nearest the range."""
    budget = BUDGET[_name(kernel)]
    tiles = _all_tiles(kernel, head_dim)
    found = [tile for tile in tiles if fits(tile, head_dim, budget)]

    def distance(tile):
        elements = per_thread(tile, head_dim)
        return max(4 / elements, elements / budget)

    return found or [min(tiles, key=distance)]


def _autotuned(kernel):
    """`kernel` autotuned over its candidate tiles, keyed by map size, head dim and layout
    (sqc: 1 when channels-last). Results are cached on disk where this Triton can."""
    options = {}
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        options["cache_results"] = True

    def prune(configs, named_args, **kwargs):
        wanted = candidates(kernel, named_args.get("D", kwargs.get("D")))
        return [
            c for c in configs if (c.kwargs["TILE_H"], c.kwargs["TILE_W"], c.num_warps) in wanted
        ]

    configs = [_config(*tile) for tile in _all_tiles(kernel)]
    return triton.autotune(
        configs,
        key=["H", "W", "D", "sqc"],
        prune_configs_by={"early_config_prune": prune},
        **options,
    )(kernel)


_TUNED = {kernel: _autotuned(kernel) for kernel in (_fwd_kernel, _bwd_q_kernel, _bwd_kv_kernel)}


def chosen_tiles() -> str | None:
    """The tiles the autotuner chose at its latest call of each kernel (CUDA), as text."""
    found = []
    for kernel, tuner in _TUNED.items():
        config = getattr(tuner, "best_config", None)
        if config is not None:
            tile = f"{config.kwargs['TILE_H']}x{config.kwargs['TILE_W']}/{config.num_warps}w"
            found.append(f"{_name(kernel).strip('_').removesuffix('_kernel')} {tile}")
    return ", ".join(found) or None


def _tiles(height: int, width: int, tile_h: int, tile_w: int) -> int:
    return triton.cdiv(height, tile_h) * triton.cdiv(width, tile_w)


def autotuning(t: torch.Tensor) -> bool:
    """Autotune on CUDA unless SASA_TRITON_AUTOTUNE=0 (then DEFAULT_TILE: each new shape
    compiles three kernels instead of about twenty, e.g. for quick correctness checks)."""
    return t.is_cuda and os.environ.get("SASA_TRITON_AUTOTUNE", "1") != "0"


def _launch(kernel, rows: int, height: int, width: int, args, meta, tile=None) -> None:
    """Run `kernel` over (rows, 2-D tiles): autotuned on CUDA unless `tile` pins
    (TILE_H, TILE_W, num_warps); the default tile elsewhere (the interpreter)."""
    if tile is None and autotuning(args[0]):

        def grid(config):
            return rows, _tiles(height, width, config["TILE_H"], config["TILE_W"])

        _TUNED[kernel][grid](*args, **meta)
        return
    tile_h, tile_w, num_warps = tile or DEFAULT_TILE
    grid = (rows, _tiles(height, width, tile_h, tile_w))
    kernel[grid](*args, **meta, TILE_H=tile_h, TILE_W=tile_w, num_warps=num_warps)


def _meta(k, rel, kernel_size: int, d: int, padding: str, scale: float) -> dict[str, object]:
    return dict(
        SCALE=float(scale),  # a runtime argument: one compile serves every scale
        KS=kernel_size,
        HAS_K=k is not None,
        HAS_REL=rel is not None,
        MASK=is_masked(padding),
        BLOCK_D=max(triton.next_power_of_2(d), 2),
    )


def _rel(rel: torch.Tensor | None, q: torch.Tensor) -> torch.Tensor:
    """The embeddings (heads, d, k^2) as the kernels read them: contiguous (heads, k^2, d), so
    that one offset's d channels are one aligned vector load (d is a compile-time constant), in
    fp32 (a few KB; no conversion per offset)."""
    return q if rel is None else rel.transpose(1, 2).float().contiguous()


def forward(q, k, v, rel, kernel_size: int, heads: int, padding="zero", scale=1.0, tile=None):
    """(out, lse): out in q's layout, lse (B, heads, H, W) of the scaled (and masked) logits in
    fp32. padding and scale as in `reference.attention`. `tile` pins the
    (TILE_H, TILE_W, num_warps) configuration; by default it is autotuned on CUDA."""
    batch, channels, height, width = q.shape
    d = channels // heads
    meta = _meta(k, rel, kernel_size, d, padding, scale)
    out = _empty_like(q)
    lse = torch.empty(batch, heads, height, width, device=q.device, dtype=torch.float32)
    args = (
        q,
        k if k is not None else q,
        v,
        _rel(rel, q),
        out,
        lse,
        *q.stride(),
        *_strides(k, q),
        *v.stride(),
        *out.stride(),
        height,
        width,
        heads,
        d,
    )
    _launch(_fwd_kernel, batch * heads, height, width, args, meta, tile)
    return out, lse


def backward(
    q, k, v, rel, out, lse, grad, kernel_size: int, heads: int, padding="zero", scale=1.0, tile=None
):
    """(dq, dk, dv, drel) for the forward above, with the same padding and scale; dk/drel None
    where k/rel are None."""
    batch, channels, height, width = q.shape
    d = channels // heads
    meta = _meta(k, rel, kernel_size, d, padding, scale)
    grad = grad.contiguous(memory_format=_format(q))
    delta = torch.empty_like(lse)  # written by the query-side kernel, read by the key-side one
    # gradients are dense in q's layout, whatever the strides of q, k, v (channel slices of one
    # projection's output, say)
    dq = _empty_like(q)
    dk = _empty_like(q) if k is not None else None
    dv = _empty_like(q)
    k_arg = k if k is not None else q
    rel_arg = _rel(rel, q)
    q_shape = q_tile(d) if tile is None and autotuning(q) else (tile or DEFAULT_TILE)[:2]
    n_tiles = _tiles(height, width, *q_shape)
    partial = torch.empty(
        (batch * heads, n_tiles, kernel_size**2, meta["BLOCK_D"]) if rel is not None else (1,),
        device=q.device,
        dtype=torch.float32,
    )
    strides = (*q.stride(), *_strides(k, q), *v.stride(), *grad.stride())
    dims = (height, width, heads, d)
    q_args = (q, k_arg, v, rel_arg, grad, out, lse, delta, dq, partial, *strides, *out.stride())
    q_args = (*q_args, *dq.stride(), *dims, n_tiles)
    _launch(_bwd_q_kernel, batch * heads, height, width, q_args, meta, tile)
    dk_arg = dk if dk is not None else dq
    kv_args = (q, k_arg, v, rel_arg, grad, lse, delta, dk_arg, dv, *strides, *dv.stride(), *dims)
    _launch(_bwd_kv_kernel, batch * heads, height, width, kv_args, meta, tile)
    drel = None
    if rel is not None:
        drel = partial.reshape(batch, heads, n_tiles, kernel_size**2, -1).sum((0, 2))
        drel = drel[..., :d].transpose(1, 2).to(rel.dtype)  # (heads, d, k^2)
    return dq, dk, dv, drel


def _format(t: torch.Tensor) -> torch.memory_format:
    """channels_last where channels are the innermost dimension (also for a channel slice of a
    channels-last tensor, as the fused q/k/v projection gives), else contiguous."""
    if t.dim() == 4 and t.shape[1] > 1 and t.stride(1) == 1:
        return torch.channels_last
    return torch.contiguous_format


def _empty_like(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor in t's layout (t may be a channel slice, which empty_like would not
    keep channels-last)."""
    return torch.empty(t.shape, device=t.device, dtype=t.dtype, memory_format=_format(t))

"""The SASA layer and the attention stem against plain-loop float64 implementations of the paper."""

import math

import pytest
import torch
import torch.nn.functional as F

from sasa_bench.layers.sasa import SASA2d
from sasa_bench.layers.stem import BLOCK, BlockAttention2d

OPTIONS = [("relative", "qk+qr"), ("absolute", "qk+qr"), ("none", "qk+qr"), ("relative", "qr")]


def head_embedding(rows, cols, a, b, head, heads):
    """r (or p) of one head: its slice of the row embedding, then its slice of the column one."""
    half = rows.shape[1] // heads
    return torch.cat(
        [rows[a, head * half : (head + 1) * half], cols[b, head * half : (head + 1) * half]]
    )


def eq3_loop(layer: SASA2d, x: torch.Tensor) -> torch.Tensor:
    """Eq. 3 pixel by pixel, head by head, offset by offset; zero-padded image border."""
    pos, heads, size = layer.pos, layer.heads, layer.kernel_size
    x = x[0]
    _, height, width = x.shape
    project = lambda w: torch.einsum("oc,chw->ohw", w, x)  # noqa: E731
    wq, wk, wv = layer.projection_weights()
    q, v = project(wq), project(wv)
    k = project(wk) if wk is not None else None
    channels = q.shape[0]
    d = channels // heads
    out = torch.zeros_like(q)
    for i in range(height):
        for j in range(width):
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                logits, values = [], []
                for dy in range(size):
                    for dx in range(size):
                        a, b = i + dy - size // 2, j + dx - size // 2
                        inside = 0 <= a < height and 0 <= b < width
                        logit = q.new_zeros(())
                        if k is not None and inside:
                            key = k[sl, a, b]
                            if pos == "absolute":
                                key = key + head_embedding(
                                    layer.abs_rows, layer.abs_cols, a, b, h, heads
                                )
                            logit = logit + q[sl, i, j] @ key
                        if pos == "relative":
                            r = head_embedding(layer.rel_rows, layer.rel_cols, dy, dx, h, heads)
                            logit = logit + q[sl, i, j] @ r
                        logits.append(logit)
                        values.append(v[sl, a, b] if inside else v.new_zeros(d))
                weights = torch.stack(logits).softmax(0)
                out[sl, i, j] = (weights[:, None] * torch.stack(values)).sum(0)
    out = out[None]
    if isinstance(layer.pool, torch.nn.AvgPool2d):
        out = F.avg_pool2d(out, 2, 2, ceil_mode=True)
    return out


def _grads(layer, x, fn, weight):
    layer.zero_grad()
    x = x.clone().requires_grad_(True)
    out = fn(x)
    (out * weight).sum().backward()
    return out.detach(), x.grad, {n: p.grad.clone() for n, p in layer.named_parameters()}


@pytest.mark.parametrize("pos, logits", OPTIONS)
@pytest.mark.parametrize("stride", [1, 2])
def test_sasa_layer_equals_eq3_loop_values_and_gradients(pos, logits, stride):
    height, width = 5, 4
    options = {"kernel_size": 3, "heads": 2, "pos": pos, "logits": logits}
    layer = SASA2d(6, 8, **options, stride=stride, feature_size=(height, width)).double()
    x = torch.randn(1, 6, height, width, dtype=torch.float64)
    weight = torch.randn(
        1, 8, math.ceil(height / stride), math.ceil(width / stride), dtype=torch.float64
    )
    ours = _grads(layer, x, layer, weight)
    loop = _grads(layer, x, lambda t: eq3_loop(layer, t), weight)
    torch.testing.assert_close(ours[0], loop[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours[1], loop[1], rtol=1e-10, atol=1e-12)
    assert ours[2].keys() == loop[2].keys()
    for name in ours[2]:
        torch.testing.assert_close(ours[2][name], loop[2][name], rtol=1e-10, atol=1e-12)


def test_window_larger_than_the_image_still_matches():
    layer = SASA2d(4, 4, kernel_size=7, heads=2).double()
    x = torch.randn(1, 4, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(layer(x), eq3_loop(layer, x), rtol=1e-10, atol=1e-12)


def _shift_test(pos: str) -> float:
    """Largest interior difference between f(shift(x)) and shift(f(x))."""
    layer = SASA2d(4, 8, kernel_size=3, heads=2, pos=pos, feature_size=(12, 12)).double()
    with torch.no_grad():  # make the positional term matter
        for name, p in layer.named_parameters():
            if "rows" in name or "cols" in name:
                p.mul_(5)
    x = torch.randn(1, 4, 12, 12, dtype=torch.float64)
    shift = (2, 1)
    with torch.no_grad():
        shifted_out = layer(torch.roll(x, shift, dims=(2, 3)))
        out_shifted = torch.roll(layer(x), shift, dims=(2, 3))
    margin = 1 + 2  # k // 2 plus the largest shift: away from padding and wrap-around
    interior = (..., slice(margin + 1, -margin), slice(margin + 1, -margin))
    return (shifted_out[interior] - out_shifted[interior]).abs().max().item()


def test_relative_layer_is_translation_equivariant_away_from_the_border():
    assert _shift_test("relative") < 1e-12


def test_absolute_layer_is_not_translation_equivariant():
    assert _shift_test("absolute") > 1e-3


def unfold_attention(q, k, v, rel, kernel_size, heads, padding="zero", scale=1.0):
    """The usual public reimplementation: k^2 unfolded copies of keys and values (control;
    zero padding, no scale, as the layer here is built)."""
    b, c, h, w = q.shape
    d, n = c // heads, kernel_size**2

    def unfold(t):
        return F.unfold(t, kernel_size, padding=kernel_size // 2).view(b, heads, d, n, h * w)

    qh = q.view(b, heads, d, 1, h * w)
    logits = (qh * unfold(k)).sum(2) + torch.einsum("bhdxp,hdo->bhop", qh, rel)
    out = (logits.softmax(2)[:, :, None] * unfold(v)).sum(3)
    return out.reshape(b, c, h, w), logits.logsumexp(2)


def _memory(layer, x, dtype):
    """(bytes autograd keeps, largest single tensor) over one forward + backward."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LargestOutput(TorchDispatchMode):
        largest = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.largest = max(self.largest, t.untyped_storage().nbytes())
            return out

    saved: dict[int, int] = {}

    def pack(t):
        assert t.dtype in (dtype, torch.int64, torch.bool), t.dtype  # no upcast copies
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    mode = LargestOutput()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), mode:
        layer(x).sum().backward()
    return sum(saved.values()), mode.largest


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_stays_below_a_k2_window_of_keys_and_values(dtype, monkeypatch):
    """What autograd keeps, and the largest temporary, are far below an unfold's k^2 copies."""
    from sasa_bench import kernels

    layer = SASA2d(64, 64, kernel_size=7, heads=8).to(dtype)
    x = torch.randn(2, 64, 16, 16, dtype=dtype, requires_grad=True)
    itemsize = torch.empty((), dtype=dtype).element_size()
    window = 2 * 49 * x.numel() * itemsize  # keys and values, k^2 copies each
    logits = 2 * layer.heads * 49 * 16 * 16 * itemsize  # (B, heads, k^2, H, W)
    saved, largest = _memory(layer, x, dtype)
    assert saved < window / 4
    assert largest <= logits  # no tensor bigger than the attention weights
    # The same measurement catches an unfold implementation.
    control = kernels.Backend(
        "unfold", __name__, exact=True, description="control", forward_name="unfold_attention"
    )
    monkeypatch.setitem(kernels.BACKENDS, "unfold", control)
    layer.impl = "unfold"
    saved, largest = _memory(layer, x, dtype)
    assert saved >= window and largest >= window / 2


def block_attention_loop(module: BlockAttention2d, x: torch.Tensor) -> torch.Tensor:
    x = x[0]
    _, height, width = x.shape
    project = lambda conv: torch.einsum("oc,chw->ohw", conv.weight[:, :, 0, 0], x)  # noqa: E731
    q, k = project(module.query), project(module.key)
    v = module.value(x[None])[0]
    heads = module.heads
    d = q.shape[0] // heads
    out = torch.zeros_like(q)
    for i in range(height):
        for j in range(width):
            bi, bj = i - i % BLOCK, j - j % BLOCK
            keys = [(a, b) for a in range(bi, bi + BLOCK) for b in range(bj, bj + BLOCK)]
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                logits = torch.stack(
                    [
                        q[sl, i, j]
                        @ (
                            k[sl, a, b]
                            + head_embedding(
                                module.rel_rows,
                                module.rel_cols,
                                a - i + BLOCK - 1,
                                b - j + BLOCK - 1,
                                h,
                                heads,
                            )
                        )
                        for a, b in keys
                    ]
                )
                values = torch.stack([v[sl, a, b] for a, b in keys])
                out[sl, i, j] = logits.softmax(0) @ values
    return out[None]


@pytest.mark.parametrize("values", ["spatial", "plain", "conv"])
def test_stem_block_attention_equals_loop(values):
    module = BlockAttention2d(3, 8, heads=2, values=values, mixtures=3).double()
    x = torch.randn(1, 3, 8, 4, dtype=torch.float64)
    weight = torch.randn(1, 8, 8, 4, dtype=torch.float64)
    ours = _grads(module, x, module, weight)
    loop = _grads(module, x, lambda t: block_attention_loop(module, t), weight)
    for a, b in zip(ours[:2], loop[:2], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for name in ours[2]:
        torch.testing.assert_close(ours[2][name], loop[2][name], rtol=1e-10, atol=1e-12)


def test_spatially_aware_values_follow_the_appendix_formula():
    module = BlockAttention2d(3, 8, heads=2, values="spatial", mixtures=4).double().value
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    weights = module.proj.weight[:, :, 0, 0].reshape(4, 8, 3)  # W_V^m
    out = module(x)
    for a in range(8):
        for b in range(8):
            emb = module.emb_rows[a % BLOCK] + module.emb_cols[b % BLOCK]
            p = (module.nu @ emb).softmax(0)  # p(a, b, m)
            expected = torch.einsum("m,moc,c->o", p, weights, x[0, :, a, b])
            torch.testing.assert_close(out[0, :, a, b], expected, rtol=1e-10, atol=1e-12)

"""ONNX translations of the attention op, for the runtimes that run an exported model.

`torch.onnx.export` (either exporter), and OpenVINO's own PyTorch converter, stop at the custom
op `sasa_bench::window_attention`: it has no ONNX form of its own. A translation gives it one,
in one of two ways:

- `decomposition`: before the ONNX translation the exported program replaces the op by the
  aten ops of one of our PyTorch backends, which the exporter's aten library then translates
  (`aten-unfold`: the unfold backend);
- `onnxscript`: the exporter's `custom_translation_table` maps the op straight to ONNX nodes
  written here (`loop`, `gather`).

Every translation is exact (tests/test_runtimes.py holds each to the float64 reference on the
kernel check's cases, both borders, with and without keys, embeddings and scale). Under one
runtime the slowest takes 2-5x the fastest's time in sasa26; `DEFAULT` is the fastest in ONNX
Runtime and OpenVINO, at batch 1 and 8 (docs/runtimes.md has the measurement). The op's second
output, the log-sum-exp, is translated too (the models never read it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from sasa_bench.errors import look_up
from sasa_bench.kernels.reference import inside_image


@dataclass(frozen=True)
class Translation:
    name: str
    kind: str  # "decomposition" | "onnxscript"
    description: str


TRANSLATIONS: dict[str, Translation] = {
    t.name: t
    for t in (
        Translation(
            "gather",
            "onnxscript",
            "each pixel's k x k window of keys and values gathered (one Gather each), "
            "q.(k + r) and p.v as batched MatMuls over the pixels",
        ),
        Translation(
            "loop",
            "onnxscript",
            "a loop over the k x k offsets: shifted Slices of the padded keys and values, "
            "Mul + ReduceSum per offset (the reference backend's form; k^2 nodes per product)",
        ),
        Translation(
            "aten-unfold",
            "decomposition",
            "the unfold backend's aten ops (pad, unfold, einsum, softmax), translated by the "
            "exporter's aten library",
        ),
    )
}
#: the fastest exact translation in ONNX Runtime and OpenVINO on a CPU (docs/runtimes.md)
DEFAULT = "gather"


def get_translation(name: str) -> Translation:
    return look_up(TRANSLATIONS, name, "ONNX translation")


def decompositions(name: str) -> dict:
    """The decomposition table of translation `name` for `ExportedProgram.run_decompositions`
    (empty for an onnxscript translation)."""
    if get_translation(name).kind != "decomposition":
        return {}
    from sasa_bench.kernels import unfold

    def decomposed(q, k, v, rel, kernel_size, heads, impl, padding, scale):
        return unfold.attention(q, k, v, rel, kernel_size, heads, padding, scale)

    return {torch.ops.sasa_bench.window_attention.default: decomposed}


def translation_table(name: str) -> dict:
    """The `custom_translation_table` of translation `name` for `torch.onnx.export` (empty for
    a decomposition)."""
    if get_translation(name).kind != "onnxscript":
        return {}
    functions: dict[str, Callable] = {"gather": _gather, "loop": _loop}
    return {torch.ops.sasa_bench.window_attention.default: functions[name]}


# -- onnxscript translations ---------------------------------------------------------------
# Called by the exporter with onnx_ir values for the tensors (None where the op got None) and
# Python values for the attributes; the batch may be symbolic, channels and sizes are static.


def _ops():
    from onnxscript import opset18

    return opset18


def _ints(*values: int):
    return _ops().Constant(value_ints=list(values))


def _integers(array: np.ndarray):
    from onnxscript import ir

    return _ops().Constant(value=ir.tensor(np.ascontiguousarray(array, dtype=np.int64)))


def _constant(array: np.ndarray, like):
    from onnxscript import ir

    op = _ops()
    return op.CastLike(op.Constant(value=ir.tensor(np.ascontiguousarray(array))), like)


def _outside_bias(height: int, width: int, kernel_size: int) -> np.ndarray:
    """(k*k, H, W): -inf where the offset's position lies outside the image, else 0."""
    outside = ~inside_image(height, width, kernel_size, "cpu").numpy()
    return np.where(outside, -np.inf, 0.0).astype(np.float32)


def _scaled_masked(logits, scale: float, padding: str, bias: Callable[[], np.ndarray]):
    op = _ops()
    if scale != 1.0:
        logits = op.Mul(logits, _constant(np.array(scale, np.float32), logits))
    if padding == "mask":
        logits = op.Add(logits, _constant(bias(), logits))
    return logits


def _lse(logits, axes: tuple[int, ...], heads: int, height: int, width: int):
    from onnxscript import ir

    op = _ops()
    lse = op.ReduceLogSumExp(logits, _ints(*axes), keepdims=0)
    return op.Cast(op.Reshape(lse, _ints(-1, heads, height, width)), to=ir.DataType.FLOAT)


def _padded(t, pad: int):
    return _ops().Pad(t, _ints(0, 0, pad, pad, 0, 0, pad, pad))


def _gather(q, k, v, rel, kernel_size, heads, impl, padding, scale):
    """Windows by Gather: with the padded map flattened to Np positions, index[n, o] is the
    position of offset o of pixel n, so Gather(keys (B, heads, Np, d), index) is every
    pixel's window (B, heads, N, k^2, d). The embeddings are added to the keys (q.k + q.r =
    q.(k + r); padded keys are zero, so there the logit is q.r), then one MatMul per product
    over the B x heads x N windows."""
    op = _ops()
    _, channels, height, width = q.shape
    d, pad, window, pixels = channels // heads, kernel_size // 2, kernel_size**2, height * width
    padded_width = width + 2 * pad
    ys, xs = np.divmod(np.arange(pixels), width)
    dys, dxs = np.divmod(np.arange(window), kernel_size)
    index = (ys[:, None] + dys[None, :]) * padded_width + xs[:, None] + dxs[None, :]
    index = _integers(index)

    def windows(t):  # (B, C, H, W) -> (B, heads, N, k^2, d)
        flat = op.Reshape(_padded(t, pad), _ints(-1, heads, d, (height + 2 * pad) * padded_width))
        return op.Gather(op.Transpose(flat, perm=[0, 1, 3, 2]), index, axis=2)

    columns = op.Transpose(op.Reshape(q, _ints(-1, heads, d, pixels)), perm=[0, 1, 3, 2])
    columns = op.Reshape(columns, _ints(-1, heads, pixels, d, 1))
    # without embeddings (or keys) a zero table: logits q.k (or 0, a uniform window)
    keys = _constant(np.zeros((heads, 1, window, d), np.float32), columns)
    if rel is not None:  # (heads, d, k^2) -> (heads, 1, k^2, d), broadcast over B and N
        table = op.Reshape(op.Transpose(rel, perm=[0, 2, 1]), _ints(heads, 1, window, d))
        keys = op.CastLike(table, columns)
    if k is not None:
        keys = windows(k) if rel is None else op.Add(windows(k), keys)

    def bias() -> np.ndarray:  # (N, k^2, 1)
        return _outside_bias(height, width, kernel_size).reshape(window, pixels).T[..., None]

    logits = _scaled_masked(op.MatMul(keys, columns), scale, padding, bias)  # (B,h,N,k^2,1)
    probs = op.Transpose(op.Softmax(logits, axis=3), perm=[0, 1, 2, 4, 3])
    out = op.Reshape(op.MatMul(probs, windows(v)), _ints(-1, heads, pixels, d))
    out = op.Reshape(op.Transpose(out, perm=[0, 1, 3, 2]), _ints(-1, channels, height, width))
    return out, _lse(logits, (3, 4), heads, height, width)


def _loop(q, k, v, rel, kernel_size, heads, impl, padding, scale):
    """The reference backend's form: for each of the k^2 offsets, the padded keys and values
    shifted by a Slice; q.k by Mul + ReduceSum over the head's channels, the output as a sum
    of k^2 products. Nothing of size k^2 x N x C, but k^2 nodes per product."""
    op = _ops()
    _, channels, height, width = q.shape
    d, pad, window = channels // heads, kernel_size // 2, kernel_size**2
    offsets = [(dy, dx) for dy in range(kernel_size) for dx in range(kernel_size)]

    def heads_view(t, h: int, w: int):
        return op.Reshape(t, _ints(-1, heads, d, h, w))

    def shifted(t, dy: int, dx: int):
        return op.Slice(t, _ints(dy, dx), _ints(dy + height, dx + width), _ints(3, 4))

    def padded(t):
        return heads_view(_padded(t, pad), height + 2 * pad, width + 2 * pad)

    qh = heads_view(q, height, width)
    # neither keys nor embeddings: logits 0 (a uniform window), of the shape of q.r
    terms = []
    if k is None and rel is None:
        shape = op.Concat(op.Shape(q, end=1), _ints(heads, window, height, width), axis=0)
        terms.append(op.Expand(_constant(np.zeros((1, 1, 1, 1, 1), np.float32), q), shape))
    if rel is not None:  # (heads, k^2, d) @ (B, heads, d, N) -> (B, heads, k^2, N)
        table = op.CastLike(op.Transpose(rel, perm=[0, 2, 1]), q)
        qr = op.MatMul(table, op.Reshape(q, _ints(-1, heads, d, height * width)))
        terms.append(op.Reshape(qr, _ints(-1, heads, window, height, width)))
    if k is not None:
        kp = padded(k)
        qk = [op.ReduceSum(op.Mul(qh, shifted(kp, dy, dx)), _ints(2)) for dy, dx in offsets]
        terms.append(op.Concat(*qk, axis=2))
    logits = terms[0] if len(terms) == 1 else op.Add(*terms)
    logits = _scaled_masked(
        logits, scale, padding, lambda: _outside_bias(height, width, kernel_size)
    )
    probs = op.Softmax(logits, axis=2)
    vp = padded(v)
    out = None
    for index, (dy, dx) in enumerate(offsets):
        weight = op.Slice(probs, _ints(index), _ints(index + 1), _ints(2))
        term = op.Mul(weight, shifted(vp, dy, dx))
        out = term if out is None else op.Add(out, term)
    out = op.Reshape(out, _ints(-1, channels, height, width))
    return out, _lse(logits, (2,), heads, height, width)

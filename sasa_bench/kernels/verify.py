"""Correctness of every attention backend against a float64 reference, forward and gradients.

Each case draws fresh random q, k, v and relative embeddings, rounds them to the tested dtype,
runs the backend through `window_attention` (the op the models call, so its autograd is
tested too), and compares the output and the gradients of q, k, v and the embeddings with the
reference backend in float64, with the case's padding mode ("zero" or "mask") and logit scale.
The error is relative: max |ours - reference| / max |reference| per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from sasa_bench.devices import DTYPES
from sasa_bench.kernels import BACKENDS, window_attention

#: relative error allowed per dtype. The reference computes in the input dtype (bf16 logits
#: and sums: a few 1e-2 on gradients); the fused kernels accumulate in fp32.
THRESHOLDS = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}
TENSORS = ("out", "dq", "dk", "dv", "drel")


@dataclass(frozen=True)
class Case:
    batch: int = 2
    channels: int = 16
    height: int = 5
    width: int = 7
    heads: int = 2
    kernel_size: int = 3
    keys: bool = True
    rel: bool = True
    padding: str = "zero"
    scale: float = 1.0

    def label(self) -> str:
        logits = "+".join(n for n, on in (("qk", self.keys), ("qr", self.rel)) if on) or "none"
        options = "".join(
            (
                f" padding={self.padding}" if self.padding != "zero" else "",
                f" scale={self.scale:.4g}" if self.scale != 1.0 else "",
            )
        )
        return (
            f"{self.batch}x{self.channels}x{self.height}x{self.width} heads={self.heads} "
            f"k={self.kernel_size} {logits}{options}"
        )


def head_dim_scale(channels: int, heads: int) -> float:
    """d**-0.5, the "1/sqrt(d)" logit scale, for `heads` heads over `channels` channels."""
    return (channels // heads) ** -0.5


#: Small shapes (the interpreter is slow): odd sizes, window larger than the image, head dims
#: 8 and 16, every logit variant; each padding mode, with and without the 1/sqrt(d) scale
#: (with the mask: the window larger than the image, q.r-only logits, q.k-only logits). Where
#: the window is larger than the image the masked cases are scaled: unscaled logits at d = 16
#: make the softmax sharp enough that the bf16 reference's own rounding (bf16 logits and sums)
#: reaches the bf16 limit on some draws; the unscaled masked case is checked at k = 3, and
#: larger windows unscaled in fp32 by tests/test_kernels.py.
_NARROW = Case(batch=1, channels=64, heads=8, height=6, width=3, kernel_size=5)
CPU_CASES = (
    Case(),
    Case(channels=32, heads=2, height=4, width=4, kernel_size=7),
    Case(keys=False),
    Case(rel=False),
    _NARROW,
    Case(padding="mask"),
    Case(scale=head_dim_scale(16, 2)),
    Case(padding="mask", scale=head_dim_scale(16, 2)),
    Case(
        channels=32,
        heads=2,
        height=4,
        width=4,
        kernel_size=7,
        padding="mask",
        scale=head_dim_scale(32, 2),
    ),
    Case(keys=False, padding="mask", scale=head_dim_scale(16, 2)),
    Case(rel=False, padding="mask"),
    replace(_NARROW, padding="mask", scale=head_dim_scale(_NARROW.channels, _NARROW.heads)),
)
#: the models' shapes (sasa50's first and last stage), in both conventions
_MODEL_SHAPES = (
    Case(batch=4, channels=64, heads=8, height=56, width=56, kernel_size=7),
    Case(batch=4, channels=512, heads=8, height=7, width=7, kernel_size=7),
)
GPU_CASES = (
    CPU_CASES
    + _MODEL_SHAPES
    + tuple(
        replace(case, padding="mask", scale=head_dim_scale(case.channels, case.heads))
        for case in _MODEL_SHAPES
    )
)


@dataclass(frozen=True)
class Verification:
    backend: str
    dtype: str
    case: str
    errors: dict[str, float | None]  # relative error per tensor, None where not computed
    threshold: float
    note: str | None = None

    @property
    def ok(self) -> bool:
        return all(e is None or e <= self.threshold for e in self.errors.values())


def _inputs(case: Case, device: torch.device, generator: torch.Generator):
    shape = (case.batch, case.channels, case.height, case.width)
    d = case.channels // case.heads

    def draw(*size):
        return torch.randn(*size, generator=generator, dtype=torch.float64).to(device)

    q, k, v = draw(*shape), draw(*shape), draw(*shape)
    rel = draw(case.heads, d, case.kernel_size**2) * d**-0.5
    grad = draw(*shape)
    return q, (k if case.keys else None), v, (rel if case.rel else None), grad


def _run(impl, tensors, grad, case, dtype, backward: bool):
    leaves = [
        None if t is None else t.detach().to(dtype, copy=True).requires_grad_(backward)
        for t in tensors
    ]
    q, k, v, rel = leaves
    out = window_attention(
        q, k, v, rel, case.kernel_size, case.heads, impl, padding=case.padding, scale=case.scale
    )
    if backward:
        out.backward(grad.to(dtype))
    grads = [None if t is None or t.grad is None else t.grad for t in leaves]
    return [out.detach(), *grads]


def _relative_error(ours: torch.Tensor | None, ref: torch.Tensor | None) -> float | None:
    if ours is None or ref is None:
        return None
    scale = ref.abs().max().item() or 1.0
    return (ours.double() - ref).abs().max().item() / scale


def verify_backend(
    name: str, device: torch.device, dtype_name: str, cases=None, seed: int = 0
) -> list[Verification]:
    dtype = DTYPES[dtype_name]
    cases = cases or (GPU_CASES if device.type == "cuda" else CPU_CASES)
    # FlexAttention has no backward on CPU: check its forward there, say so.
    backward = not (name == "flex" and device.type != "cuda")
    note = None if backward else "forward only: FlexAttention has no backward on CPU"
    generator = torch.Generator().manual_seed(seed)
    results = []
    for case in cases:
        # The reference sees the same (rounded) inputs: errors measure the kernel, not the
        # rounding of its inputs to the tested dtype.
        tensors = [
            None if t is None else t.to(dtype).double() for t in _inputs(case, device, generator)
        ]
        reference = _run("reference", tensors[:4], tensors[4], case, torch.float64, True)
        ours = _run(name, tensors[:4], tensors[4], case, dtype, backward)
        errors = {
            t: _relative_error(a, b) for t, a, b in zip(TENSORS, ours, reference, strict=True)
        }
        results.append(
            Verification(name, dtype_name, case.label(), errors, THRESHOLDS[dtype], note)
        )
    return results


def available_backends() -> dict[str, str | None]:
    """Every backend with the reason it cannot run here (None: it can)."""
    return {name: backend.unavailable() for name, backend in BACKENDS.items()}

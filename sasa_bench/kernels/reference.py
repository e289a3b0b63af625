"""Reference SASA attention core: Eq. 3 of the paper, written for clarity and bounded memory.

    y_ij = sum_{(a,b) in N_k(i,j)} softmax_ab(s * (q_ij . k_ab + q_ij . r_(a-i, b-j))) v_ab

with s the logit scale (1 in the paper; d**-0.5 in tensor2tensor). The k x k offsets are visited
one at a time over zero-padded keys and values, so nothing of size k^2 x N x C is ever
materialised (an unfold implementation copies keys and values k^2 times). What autograd keeps is
q, the padded k and v, and the logits/probabilities (heads x k^2 x N), all in the input dtype.
With padding="zero" the padded positions take part in the softmax (logit s * q.r, value 0),
exactly as a zero-padded image would give; with padding="mask" their logits are -inf, so they
get probability 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sasa_bench.kernels import is_masked


def inside_image(height: int, width: int, kernel_size: int, device) -> torch.Tensor:
    """(k*k, H, W) booleans: whether offset dy * k + dx of pixel (y, x)'s window, the position
    (y + dy - k // 2, x + dx - k // 2), lies inside the image."""
    shifts = torch.arange(kernel_size, device=device) - kernel_size // 2

    def along(size: int) -> torch.Tensor:  # (k, size)
        at = torch.arange(size, device=device)[None, :] + shifts[:, None]
        return (at >= 0) & (at < size)

    inside = along(height)[:, None, :, None] & along(width)[None, :, None, :]
    return inside.reshape(kernel_size**2, height, width)


def attention(
    q: torch.Tensor,
    k: torch.Tensor | None,
    v: torch.Tensor,
    rel: torch.Tensor | None,
    kernel_size: int,
    heads: int,
    padding: str = "zero",
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed multi-head attention.

    q, k, v: (B, C, H, W), head h owning channels [h*d, (h+1)*d) with d = C / heads.
    k: None for the q.r-only logits of Table 6.
    rel: (heads, d, k*k) relative embeddings, offset index = dy * k + dx, or None.
    padding: "zero" (outside positions are zero keys and values inside the softmax) or "mask"
    (left out of it). scale: multiplies the logits.
    Returns (out (B, C, H, W), log-sum-exp of the scaled (and masked) logits (B, heads, H, W)
    in fp32).
    """
    masked = is_masked(padding)
    batch, channels, height, width = q.shape
    d = channels // heads
    pad = kernel_size // 2
    offsets = [(dy, dx) for dy in range(kernel_size) for dx in range(kernel_size)]

    def heads_view(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, heads, d, *t.shape[-2:])

    qh = heads_view(q)
    vp = heads_view(F.pad(v, (pad, pad, pad, pad)))
    if rel is not None:  # q . r for every offset at once: (B, heads, k*k, H, W)
        logits = torch.einsum("bhdyx,hdo->bhoyx", qh, rel.to(q.dtype))
    else:
        logits = q.new_zeros(batch, heads, len(offsets), height, width)
    if k is not None:
        kp = heads_view(F.pad(k, (pad, pad, pad, pad)))
        qk = [(qh * kp[..., dy : dy + height, dx : dx + width]).sum(2) for dy, dx in offsets]
        logits = logits + torch.stack(qk, dim=2)
    if scale != 1.0:
        logits = logits * scale
    if masked:
        outside = ~inside_image(height, width, kernel_size, q.device)
        logits = logits.masked_fill(outside, float("-inf"))
    probs = logits.softmax(dim=2)
    out = torch.zeros_like(qh)
    for index, (dy, dx) in enumerate(offsets):
        out = out + probs[:, :, index : index + 1] * vp[..., dy : dy + height, dx : dx + width]
    return out.reshape(batch, channels, height, width), logits.detach().logsumexp(dim=2).float()

"""SASA attention by unfolding: k^2 copies of keys and values, then dense products.

The straightforward way most public reimplementations take (unfolding the zero-padded
image). Exact, and on small feature maps (CPU training on small images) much faster than the
reference's loop over offsets, at the price the reference avoids: transient tensors of k^2 x N x C
elements (about a k^2 window of keys and values, plus one product of that size). It is also the
baseline of the speed numbers quoted for SASA (an unfold model ran 34x slower than ResNet-50).
Padding modes and the logit scale as in `reference.attention`: with padding="mask" the logits of
positions outside the image are -inf (probability 0); with "zero" they are s * q.r.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sasa_bench.kernels import is_masked
from sasa_bench.kernels.reference import inside_image


def attention(q, k, v, rel, kernel_size: int, heads: int, padding="zero", scale=1.0):
    """(out, lse); same contract as `reference.attention`."""
    masked = is_masked(padding)
    batch, channels, height, width = q.shape
    d, window = channels // heads, kernel_size**2

    def unfold(t: torch.Tensor) -> torch.Tensor:  # (B, heads, d, k^2, N)
        # pad + Tensor.unfold + one copy: F.unfold (im2col) is 10-20x slower on small maps
        padded = F.pad(t, (kernel_size // 2,) * 4)
        patches = padded.unfold(2, kernel_size, 1).unfold(3, kernel_size, 1)  # (B,C,H,W,k,k)
        return patches.permute(0, 1, 4, 5, 2, 3).reshape(batch, heads, d, window, height * width)

    qh = q.reshape(batch, heads, d, 1, height * width)
    if rel is not None:
        logits = torch.einsum("bhdxn,hdo->bhon", qh, rel.to(q.dtype))
    else:
        logits = q.new_zeros(batch, heads, window, height * width)
    if k is not None:
        logits = logits + (qh * unfold(k)).sum(2)
    if scale != 1.0:
        logits = logits * scale
    if masked:
        outside = ~inside_image(height, width, kernel_size, q.device).view(window, -1)
        logits = logits.masked_fill(outside, float("-inf"))
    probs = logits.softmax(dim=2)
    out = (probs.unsqueeze(2) * unfold(v)).sum(3)
    lse = logits.detach().logsumexp(dim=2).float().view(batch, heads, height, width)
    return out.reshape(batch, channels, height, width), lse

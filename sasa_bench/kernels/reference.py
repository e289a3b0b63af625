"""Reference SASA attention core: Eq. 3 of the paper, written for clarity and bounded memory.

    y_ij = sum_{(a,b) in N_k(i,j)} softmax_ab(q_ij . k_ab + q_ij . r_(a-i, b-j)) v_ab

The k x k offsets are visited one at a time over zero-padded keys and values, so nothing of size
k^2 x N x C is ever materialised (an unfold implementation copies keys and values k^2 times).
What autograd keeps is q, the padded k and v, and the logits/probabilities (heads x k^2 x N),
all in the input dtype. Padded positions take part in the softmax (logit q.r, value 0), exactly
as a zero-padded image would give.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(
    q: torch.Tensor,
    k: torch.Tensor | None,
    v: torch.Tensor,
    rel: torch.Tensor | None,
    kernel_size: int,
    heads: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed multi-head attention.

    q, k, v: (B, C, H, W), head h owning channels [h*d, (h+1)*d) with d = C / heads.
    k: None for the q.r-only logits of Table 6.
    rel: (heads, d, k*k) relative embeddings, offset index = dy * k + dx, or None.
    Returns (out (B, C, H, W), log-sum-exp of the logits (B, heads, H, W) in fp32).
    """
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
    probs = logits.softmax(dim=2)
    out = torch.zeros_like(qh)
    for index, (dy, dx) in enumerate(offsets):
        out = out + probs[:, :, index : index + 1] * vp[..., dy : dy + height, dx : dx + width]
    return out.reshape(batch, channels, height, width), logits.detach().logsumexp(dim=2).float()

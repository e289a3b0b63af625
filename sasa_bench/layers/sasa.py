"""The SASA layer (Eq. 3), paper-faithful, and its analytic cost.

- q, k, v: dense 1x1 projections d_in -> d_out without bias, split into heads afterwards (dense
  projections are what give the paper's 18.0 M parameters for SASA ResNet-50). They are stored
  and run as one convolution with 3 x d_out (2 x d_out without keys) output channels.
- Logits q.k + q.r over the centred k x k window; the border is zero-padded.
- r: a row-offset and a column-offset embedding of d_out/2 each, concatenated. Each head holds
  d/2 channels of each (channels are rounded to a multiple of 2 x heads for this).
- No 1/sqrt(d) scaling (there is none in the paper's equations).
- Each projection is initialised as a separate 1x1 convolution d_in -> d_out would be (He
  normal, fan_out = d_out), whatever its storage.
- Where the replaced convolution had stride 2, a 2x2 average pool (stride 2) follows; attention
  runs at the input resolution.
Ablations: pos = absolute (row/column tables over the feature map added to the keys) or none;
logits = qr (no key projection, q.r only).
Conventions outside Eq. 3 (docs/models.md): padding = mask (padded keys left out of the softmax,
as tensor2tensor's local attention does), qscale = rsqrt (q scaled by 1/sqrt(d), tensor2tensor
and the Transformer), qkv_init = fused (the stacked projection initialised as one convolution of
3 x d_out outputs: std lower by sqrt(3)). None changes the cost.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sasa_bench.kernels import window_attention
from sasa_bench.layers.cost import LayerCost, Shape

#: positional encodings (Table 5) and logit types (Table 6)
POSITIONAL = ("relative", "absolute", "none")
LOGITS = ("qk+qr", "qr")
#: border conventions (sasa_bench.kernels.PADDINGS), query scalings, projection inits
PADDINGS = ("zero", "mask")
QSCALES = ("none", "rsqrt")
QKV_INITS = ("separate", "fused")


def combine_row_col(rows: torch.Tensor, cols: torch.Tensor, heads: int) -> torch.Tensor:
    """(R, C/2) row and (S, C/2) column embeddings -> (heads, d, R, S) per-head tables whose
    first d/2 channels come from the row embedding and last d/2 from the column embedding."""
    half_head = rows.shape[1] // heads
    r = rows.reshape(rows.shape[0], heads, half_head).permute(1, 2, 0)[:, :, :, None]
    c = cols.reshape(cols.shape[0], heads, half_head).permute(1, 2, 0)[:, :, None, :]
    shape = (heads, half_head, rows.shape[0], cols.shape[0])
    return torch.cat([r.expand(shape), c.expand(shape)], dim=1)


def _check(**options: str) -> None:
    choices = {
        "pos": POSITIONAL, "logits": LOGITS, "padding": PADDINGS, "qscale": QSCALES,
        "qkv_init": QKV_INITS,
    }  # fmt: skip
    for name, value in options.items():
        if value not in choices[name]:
            raise ValueError(f"{name} must be one of {', '.join(choices[name])}; got {value!r}")


class SASA2d(nn.Module):
    """SASA attention over the k x k window of every pixel, `in_channels` -> `out_channels`.

    `stride=2` adds the 2x2 average pool; `feature_size` (height, width) is needed for
    `pos="absolute"` only; `impl` names the attention backend (`sasa_bench.kernels`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 7,
        heads: int = 8,
        pos: str = "relative",
        logits: str = "qk+qr",
        padding: str = "zero",
        qscale: str = "none",
        qkv_init: str = "separate",
        stride: int = 1,
        feature_size: tuple[int, int] | None = None,
        impl: str = "reference",
    ) -> None:
        super().__init__()
        _check(pos=pos, logits=logits, padding=padding, qscale=qscale, qkv_init=qkv_init)
        if out_channels % (2 * heads):
            raise ValueError(f"out_channels {out_channels} must divide into 2 x heads halves")
        self.heads = heads
        self.kernel_size = kernel_size
        self.pos = pos
        self.uses_keys = logits == "qk+qr"
        self.out_channels = out_channels
        self.padding = padding
        self.scale = (out_channels // heads) ** -0.5 if qscale == "rsqrt" else 1.0
        self.qkv_init = qkv_init
        # q, (k,) v: one 1x1 convolution with the projections' filters stacked, so that x is read
        # once and the three products are one GEMM; q, k, v are channel slices of its output
        projections = 3 if self.uses_keys else 2
        self.qkv = nn.Conv2d(in_channels, projections * out_channels, 1, bias=False)
        self.reset_projections()
        half = out_channels // 2
        std = (out_channels // self.heads) ** -0.5
        if pos == "relative":
            self.rel_rows = nn.Parameter(torch.randn(self.kernel_size, half) * std)
            self.rel_cols = nn.Parameter(torch.randn(self.kernel_size, half) * std)
        elif pos == "absolute":
            if feature_size is None:
                raise ValueError("absolute positional encoding needs the feature map size")
            self.abs_rows = nn.Parameter(torch.randn(feature_size[0], half) * std)
            self.abs_cols = nn.Parameter(torch.randn(feature_size[1], half) * std)
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True) if stride == 2 else nn.Identity()
        self.impl = impl

    def reset_projections(self) -> None:
        """He-normal init (fan_out, ReLU gain), as the models initialise every convolution:
        per projection (fan_out = d_out) for `separate`, over the stacked 3 x d_out for
        `fused`."""
        weight = self.qkv.weight.data
        parts = weight.split(self.out_channels) if self.qkv_init == "separate" else (weight,)
        for part in parts:
            nn.init.kaiming_normal_(part, mode="fan_out", nonlinearity="relu")

    def relative_table(self) -> torch.Tensor:
        """(heads, d, k*k): r for offset (dy - k//2, dx - k//2) at index dy * k + dx."""
        table = combine_row_col(self.rel_rows, self.rel_cols, self.heads)
        return table.flatten(2)

    def absolute_table(self) -> torch.Tensor:
        """(C, H, W): the absolute embedding of every position of the feature map."""
        table = combine_row_col(self.abs_rows, self.abs_cols, self.heads)
        return table.flatten(0, 1)

    def projection_weights(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The (out, in) matrices of the q, k (None without keys) and v projections."""
        parts = self.qkv.weight[:, :, 0, 0].split(self.out_channels)
        return parts[0], parts[1] if self.uses_keys else None, parts[-1]

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """q, k (None without keys), v: channel slices of the one projection's output."""
        parts = self.qkv(x).split(self.out_channels, dim=1)
        return parts[0], parts[1] if self.uses_keys else None, parts[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.project(x)
        rel = None
        if self.pos == "relative":
            rel = self.relative_table()
        elif self.pos == "absolute":
            table = self.absolute_table()
            if table.shape[-2:] != x.shape[-2:]:
                raise ValueError(
                    f"absolute positional tables are {tuple(table.shape[-2:])}, input is "
                    f"{tuple(x.shape[-2:])}: build the model for this resolution"
                )
            k = k + table.to(k.dtype)
        out = window_attention(
            q, k, v, rel, self.kernel_size, self.heads, self.impl, self.padding, self.scale
        )
        return self.pool(out)

    @staticmethod
    def cost(
        name: str,
        in_shape: Shape,
        out_channels: int,
        *,
        kernel_size: int = 7,
        heads: int = 8,
        pos: str = "relative",
        logits: str = "qk+qr",
        padding: str = "zero",
        qscale: str = "none",
        qkv_init: str = "separate",
        stride: int = 1,
    ) -> LayerCost:
        """The cost of the layer these options build (`heads`, the border convention, the
        query scaling and the init do not change it)."""
        _check(pos=pos, logits=logits, padding=padding, qscale=qscale, qkv_init=qkv_init)
        channels, height, width = in_shape
        uses_keys = logits == "qk+qr"
        projections = 3 if uses_keys else 2
        params = projections * channels * out_channels
        # Each of q.k, q.r and attn.v costs k^2 x d_out MACs per pixel, before any pooling.
        products = 1 + uses_keys + (pos == "relative")
        if pos == "relative":
            params += 2 * kernel_size * (out_channels // 2)
        elif pos == "absolute":
            params += (height + width) * (out_channels // 2)
        window = kernel_size**2
        macs = (
            height
            * width
            * (projections * channels * out_channels + products * window * out_channels)
        )
        if stride == 2:
            height, width = math.ceil(height / 2), math.ceil(width / 2)
        return LayerCost(name, "sasa", in_shape, (out_channels, height, width), params, macs)

"""Stems: the ResNet conv stem and the paper's attention stems (appendix, Table 7).

Conv stem: 7x7/2 conv, BN, ReLU, 3x3/2 max pool.

Attention stem: attention inside each 4x4 block of the image at full resolution, then BN, ReLU
and a 4x4 max pool aligned to the blocks. Logits are Eq. 3's q.k + q.r (relative offsets -3..3
inside the block). The three variants differ in the values (Table 7):
- `spatial` (the paper's stem): v_ab = (sum_m p(a,b,m) W_V^m) x_ab with
  p(a,b,m) = softmax_m((emb_row(a) + emb_col(b)) . nu_m), row/column embeddings of the position
  inside the 4x4 pooling window, p shared across heads;
- `plain`: a 1x1 value projection (the stand-alone attention stem);
- `conv`: a 4x4 convolution for the values (TF 'SAME' padding, 1 before and 2 after).
Details the paper leaves open, chosen because they reproduce Table 7's FLOPs (7.1 / 7.2 / 7.4 B
for plain / spatial / conv): q.r logits in every variant, a 4x4 value convolution, m = 4
mixtures, embeddings of the stem's width, 4 heads.
"""

from __future__ import annotations

import torch
from torch import nn

from sasa_bench.layers.cost import LayerCost, Shape, batchnorm_cost, conv_cost, conv_out
from sasa_bench.layers.sasa import combine_row_col

BLOCK = 4  # side of the attention blocks and of the max pool that follows


class ConvStem(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))

    @staticmethod
    def cost(prefix: str, in_shape: Shape, out_channels: int) -> tuple[list[LayerCost], Shape]:
        conv = conv_cost(f"{prefix}.conv", in_shape, out_channels, 7, stride=2, padding=3)
        _, height, width = conv.out_shape
        out = (out_channels, conv_out(height, 3, 2, 1), conv_out(width, 3, 2, 1))
        pool = LayerCost(f"{prefix}.pool", "maxpool", conv.out_shape, out, 0, 0)
        return [conv, batchnorm_cost(f"{prefix}.bn", conv.out_shape), pool], out


class SpatialValues(nn.Module):
    """Spatially-aware values: m value projections mixed by position-dependent weights."""

    def __init__(self, in_channels: int, out_channels: int, mixtures: int) -> None:
        super().__init__()
        self.mixtures = mixtures
        self.proj = nn.Conv2d(in_channels, mixtures * out_channels, 1, bias=False)
        self.emb_rows = nn.Parameter(torch.randn(BLOCK, out_channels) * out_channels**-0.5)
        self.emb_cols = nn.Parameter(torch.randn(BLOCK, out_channels) * out_channels**-0.5)
        self.nu = nn.Parameter(torch.randn(mixtures, out_channels) * out_channels**-0.5)

    def mixture_weights(self) -> torch.Tensor:
        """p(a, b, m) for the BLOCK x BLOCK positions of a pooling window: (m, BLOCK, BLOCK)."""
        emb = self.emb_rows[:, None, :] + self.emb_cols[None, :, :]
        return torch.einsum("abe,me->mab", emb, self.nu).softmax(dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        values = self.proj(x).reshape(batch, self.mixtures, -1, height, width)
        p = self.mixture_weights().to(x.dtype)
        p = p.repeat(1, height // BLOCK, width // BLOCK)  # position (i, j) -> (i % 4, j % 4)
        return torch.einsum("bmchw,mhw->bchw", values, p)


class BlockAttention2d(nn.Module):
    """Multi-head attention inside non-overlapping 4x4 blocks, logits q.k + q.r."""

    def __init__(
        self, in_channels: int, out_channels: int, *, heads: int, values: str, mixtures: int
    ) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.key = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if values == "spatial":
            self.value = SpatialValues(in_channels, out_channels, mixtures)
        elif values == "plain":
            self.value = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        elif values == "conv":
            self.value = nn.Sequential(
                nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(in_channels, out_channels, BLOCK, bias=False)
            )
        else:
            raise ValueError(f"unknown stem values {values!r}")
        span = 2 * BLOCK - 1  # offsets -3..3
        std = (out_channels // heads) ** -0.5
        self.rel_rows = nn.Parameter(torch.randn(span, out_channels // 2) * std)
        self.rel_cols = nn.Parameter(torch.randn(span, out_channels // 2) * std)
        pos = torch.arange(BLOCK)
        offset = pos[None, :] - pos[:, None] + BLOCK - 1  # [query, key] -> index of key - query
        self.register_buffer("offset", offset, persistent=False)

    def relative_table(self) -> torch.Tensor:
        """(heads, d, 16, 16): r for every (query, key) pair of positions inside a block."""
        table = combine_row_col(self.rel_rows, self.rel_cols, self.heads)  # (h, d, 7, 7)
        rows = self.offset[:, None, :, None].expand(BLOCK, BLOCK, BLOCK, BLOCK)
        cols = self.offset[None, :, None, :].expand(BLOCK, BLOCK, BLOCK, BLOCK)
        pairs = table[:, :, rows, cols]  # (h, d, qi, qj, ki, kj)
        return pairs.reshape(*table.shape[:2], BLOCK * BLOCK, BLOCK * BLOCK)

    def _blocks(self, t: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = t.shape
        t = t.reshape(
            batch, self.heads, channels // self.heads, height // BLOCK, BLOCK, width // BLOCK, BLOCK
        )
        t = t.permute(0, 1, 3, 5, 4, 6, 2)  # (b, h, y, x, i, j, d)
        return t.reshape(*t.shape[:4], BLOCK * BLOCK, t.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        q, k, v = (self._blocks(f(x)) for f in (self.query, self.key, self.value))
        logits = torch.einsum("bhyxid,bhyxjd->bhyxij", q, k)
        logits = logits + torch.einsum("bhyxid,hdij->bhyxij", q, self.relative_table().to(q.dtype))
        out = torch.einsum("bhyxij,bhyxjd->bhyxid", logits.softmax(-1), v)
        out = out.reshape(*out.shape[:4], BLOCK, BLOCK, out.shape[-1])  # (b, h, y, x, i, j, d)
        return out.permute(0, 1, 6, 2, 4, 3, 5).reshape(batch, -1, height, width)

    @staticmethod
    def cost(
        name: str, in_shape: Shape, out_channels: int, *, values: str, mixtures: int
    ) -> LayerCost:
        channels, height, width = in_shape
        pixels = height * width
        window = BLOCK * BLOCK
        per_pixel = 2 * channels * out_channels + 3 * window * out_channels  # q, k; qk, qr, av
        params = 2 * channels * out_channels + 2 * (2 * BLOCK - 1) * (out_channels // 2)
        if values == "spatial":
            # m projections and their mix; p(a,b,m) itself is batch-independent (16 x m x d).
            per_pixel += mixtures * channels * out_channels + mixtures * out_channels
            params += mixtures * channels * out_channels + (2 * BLOCK + mixtures) * out_channels
        elif values == "plain":
            per_pixel += channels * out_channels
            params += channels * out_channels
        else:
            per_pixel += window * channels * out_channels
            params += window * channels * out_channels
        out = (out_channels, height, width)
        return LayerCost(name, "stem-attention", in_shape, out, params, pixels * per_pixel)


class AttentionStem(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, *, heads: int, values: str, mixtures: int
    ) -> None:
        super().__init__()
        self.attn = BlockAttention2d(
            in_channels, out_channels, heads=heads, values=values, mixtures=mixtures
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(BLOCK, stride=BLOCK)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % BLOCK or x.shape[-2] % BLOCK:
            raise ValueError(f"the attention stem needs a size divisible by {BLOCK}, got {x.shape}")
        return self.pool(self.relu(self.bn(self.attn(x))))

    @staticmethod
    def cost(
        prefix: str, in_shape: Shape, out_channels: int, *, values: str, mixtures: int, **_: object
    ) -> tuple[list[LayerCost], Shape]:
        attn = BlockAttention2d.cost(
            f"{prefix}.attn", in_shape, out_channels, values=values, mixtures=mixtures
        )
        _, height, width = in_shape
        out = (out_channels, height // BLOCK, width // BLOCK)
        pool = LayerCost(f"{prefix}.pool", "maxpool", attn.out_shape, out, 0, 0)
        return [attn, batchnorm_cost(f"{prefix}.bn", attn.out_shape), pool], out

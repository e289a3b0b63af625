"""The cost of one layer for one image, computed from its configuration (never by running it).

Convention, stated once: a multiply-accumulate (MAC) is one fused multiply-add; FLOPs = 2 x MACs,
as in the paper (ResNet-50 = 4.09 GMACs = 8.2 B FLOPS). Only multiply-accumulates are counted
(convolutions, linear layers, the projections and the q.k, q.r and attn.v products of attention,
the value mixing of the attention stem). Elementwise work (batch norm, ReLU, softmax, pooling,
residual additions) is not: the paper calls it negligible (about 0.1 B for a ResNet-50).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Shape = tuple[int, int, int]  # (channels, height, width) of one image
#: row levels of `ModelCost.grouped`
GROUPINGS = ("layer", "block", "stage")


@dataclass(frozen=True)
class LayerCost:
    name: str  # qualified module name in the built model, e.g. "stages.1.0.mixer"
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int  # per image

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def activations(self) -> int:
        """Elements of the layer's output for one image, counted for the layers that compute
        (conv, linear, attention), as in "Designing Network Design Spaces" and fvcore's
        ActivationCountAnalysis; batch norm, which works on its conv's output, counts 0."""
        return math.prod(self.out_shape) if self.macs else 0


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv_cost(
    name: str, in_shape: Shape, out_channels: int, kernel: int, stride: int = 1, padding: int = 0
) -> LayerCost:
    channels, height, width = in_shape
    out = (
        out_channels,
        conv_out(height, kernel, stride, padding),
        conv_out(width, kernel, stride, padding),
    )
    weights = channels * out_channels * kernel * kernel
    return LayerCost(name, "conv", in_shape, out, weights, weights * out[1] * out[2])


def batchnorm_cost(name: str, shape: Shape) -> LayerCost:
    return LayerCost(name, "bn", shape, shape, 2 * shape[0], 0)


def linear_cost(name: str, in_features: int, out_features: int) -> LayerCost:
    params = in_features * out_features + out_features
    return LayerCost(
        name, "linear", (in_features,), (out_features,), params, in_features * out_features
    )


@dataclass(frozen=True)
class ModelCost:
    """The cost of a network for one image: its layers in forward order, and their sums."""

    layers: tuple[LayerCost, ...]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def activations(self) -> int:
        return sum(layer.activations for layer in self.layers)

    def totals(self) -> dict[str, int]:
        """{"params", "macs", "flops"}: the cost as every record stores it."""
        return {"params": self.params, "macs": self.macs, "flops": self.flops}

    def by_layer(self) -> dict[str, list[int]]:
        """{layer name: [params, macs, flops]}, as a regression baseline stores it."""
        return {layer.name: [layer.params, layer.macs, layer.flops] for layer in self.layers}

    def grouped(self, level: str) -> list[dict[str, object]]:
        """Rows summed per layer, per block ("stages.1.0") or per stage ("stages.1")."""
        if level not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, got {level!r}")
        depth = {"layer": None, "block": 3, "stage": 2}[level]
        rows: dict[str, dict[str, object]] = {}
        for layer in self.layers:
            parts = layer.name.split(".")
            key = layer.name
            if depth is not None:
                key = ".".join(parts[:depth] if parts[0] == "stages" else parts[:1])
            row = rows.get(key)
            if row is None:
                row = rows[key] = {
                    "name": key,
                    "type": layer.type if depth is None else level,
                    "in_shape": list(layer.in_shape),
                    "out_shape": list(layer.out_shape),
                    "params": 0,
                    "macs": 0,
                    "activations": 0,
                }
            row["out_shape"] = list(layer.out_shape)
            row["params"] += layer.params
            row["macs"] += layer.macs
            row["activations"] += layer.activations
        for row in rows.values():
            row["flops"] = 2 * row["macs"]
            row["flops_share"] = row["flops"] / self.flops if self.flops else 0.0
        return list(rows.values())

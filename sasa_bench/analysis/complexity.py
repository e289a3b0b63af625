"""Analytic cost of a model from its spec: per-layer params, MACs, output activations; totals.

Nothing is built or run. FLOPs = 2 x MACs (the paper's convention); every field says which it is.
See `sasa_bench.layers.cost` for what is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sasa_bench.layers.cost import LayerCost, linear_cost
from sasa_bench.models.resnet import Bottleneck, plan_blocks, stem_cost
from sasa_bench.models.spec import ModelSpec

GROUPINGS = ("layer", "block", "stage")


@dataclass(frozen=True)
class ModelCost:
    spec: ModelSpec
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


def model_cost(spec: ModelSpec) -> ModelCost:
    """Cost of the network `spec` describes, for one image at spec.resolution."""
    layers, _ = stem_cost(spec)
    plans = plan_blocks(spec)
    for plan in plans:
        layers += Bottleneck.cost(plan, spec)
    layers.append(linear_cost("fc", plans[-1].out_channels, spec.num_classes))
    return ModelCost(spec, tuple(layers))

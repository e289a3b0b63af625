"""One generic ResNet (v1.5 bottlenecks: stride on the spatial layer) built from a ModelSpec.

Conv, SASA and mixed networks are the same code fed different specs. The block plan below is the
single description of the architecture: the builder instantiates it and the analytic cost
(`model_cost`) walks it, each block's `cost()` sitting next to its __init__.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sasa_bench.errors import SpecError
from sasa_bench.layers.cost import (
    LayerCost,
    ModelCost,
    Shape,
    batchnorm_cost,
    conv_cost,
    linear_cost,
)
from sasa_bench.layers.sasa import SASA2d
from sasa_bench.layers.stem import AttentionStem, ConvStem
from sasa_bench.models.spec import EXPANSION, GROUP_WIDTHS, ModelSpec
from sasa_bench.models.thirdparty import ThirdPartySpec

IN_CHANNELS = 3
STEM_VALUES = {"attention": "spatial", "attention-plain": "plain", "attention-convvalues": "conv"}


@dataclass(frozen=True)
class BlockPlan:
    name: str  # module path, e.g. "stages.1.0"
    in_shape: Shape  # (channels, height, width) entering the block
    width: int  # channels of the spatial (conv or attention) layer
    out_channels: int
    stride: int
    mixer: str  # "c" or "a"


def stem_plan(spec: ModelSpec) -> tuple[type[nn.Module], dict[str, object]]:
    """The stem class and its keyword arguments (besides in/out channels)."""
    if spec.stem == "conv":
        return ConvStem, {}
    values = STEM_VALUES[spec.stem]
    return AttentionStem, {
        "heads": spec.stem_heads,
        "values": values,
        "mixtures": spec.stem_mixtures,
    }


def stem_cost(spec: ModelSpec) -> tuple[list[LayerCost], Shape]:
    stem_cls, kwargs = stem_plan(spec)
    image = (IN_CHANNELS, spec.resolution, spec.resolution)
    return stem_cls.cost("stem", image, spec.stem_width, **kwargs)


def plan_blocks(spec: ModelSpec) -> list[BlockPlan]:
    """Every bottleneck block of the network with its input shape, for spec.resolution."""
    _, shape = stem_cost(spec)
    plans = []
    for group, (count, base) in enumerate(zip(spec.blocks, GROUP_WIDTHS, strict=True)):
        width = spec.channels(base)
        out_channels = spec.channels(base * EXPANSION)
        for index in range(count):
            stride = 2 if index == 0 and group > 0 else 1
            if min(shape[1:]) < stride:
                raise SpecError(
                    f"resolution {spec.resolution} is too small for this network: "
                    f"group {group + 1} would downsample a {shape[1]}x{shape[2]} map"
                )
            plans.append(
                BlockPlan(
                    f"stages.{group}.{index}",
                    shape,
                    width,
                    out_channels,
                    stride,
                    spec.stages[group],
                )
            )
            shape = (out_channels, math.ceil(shape[1] / stride), math.ceil(shape[2] / stride))
    return plans


class Bottleneck(nn.Module):
    def __init__(self, plan: BlockPlan, spec: ModelSpec) -> None:
        super().__init__()
        in_channels, height, width = plan.in_shape
        self.conv1 = nn.Conv2d(in_channels, plan.width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(plan.width)
        if plan.mixer == "a":
            self.mixer: nn.Module = SASA2d(
                plan.width,
                plan.width,
                **spec.attention.options(),
                stride=plan.stride,
                feature_size=(height, width),
            )
        else:
            self.mixer = nn.Conv2d(plan.width, plan.width, 3, plan.stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(plan.width)
        self.conv3 = nn.Conv2d(plan.width, plan.out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(plan.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if plan.stride != 1 or in_channels != plan.out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, plan.out_channels, 1, plan.stride, bias=False),
                nn.BatchNorm2d(plan.out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.mixer(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)

    @staticmethod
    def cost(plan: BlockPlan, spec: ModelSpec) -> list[LayerCost]:
        name = plan.name
        conv1 = conv_cost(f"{name}.conv1", plan.in_shape, plan.width, 1)
        if plan.mixer == "a":
            mixer = SASA2d.cost(
                f"{name}.mixer",
                conv1.out_shape,
                plan.width,
                **spec.attention.options(),
                stride=plan.stride,
            )
        else:
            mixer = conv_cost(f"{name}.mixer", conv1.out_shape, plan.width, 3, plan.stride, 1)
        conv3 = conv_cost(f"{name}.conv3", mixer.out_shape, plan.out_channels, 1)
        layers = [
            conv1,
            batchnorm_cost(f"{name}.bn1", conv1.out_shape),
            mixer,
            batchnorm_cost(f"{name}.bn2", mixer.out_shape),
            conv3,
            batchnorm_cost(f"{name}.bn3", conv3.out_shape),
        ]
        if plan.stride != 1 or plan.in_shape[0] != plan.out_channels:
            down = conv_cost(
                f"{name}.downsample.0", plan.in_shape, plan.out_channels, 1, plan.stride
            )
            layers += [down, batchnorm_cost(f"{name}.downsample.1", down.out_shape)]
        return layers


class ResNet(nn.Module):
    def __init__(self, spec: ModelSpec, *, attn_impl: str = "reference") -> None:
        super().__init__()
        self.spec = spec
        stem_cls, kwargs = stem_plan(spec)
        self.stem = stem_cls(IN_CHANNELS, spec.stem_width, **kwargs)
        plans = plan_blocks(spec)
        self.stages = nn.ModuleList(
            nn.Sequential(
                *(Bottleneck(p, spec) for p in plans if p.name.startswith(f"stages.{g}."))
            )
            for g in range(len(spec.blocks))
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(plans[-1].out_channels, spec.num_classes)
        self._init_weights()
        set_attention_impl(self, attn_impl)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, SASA2d):
                module.reset_projections()  # its stacked q/k/v is not one convolution
            elif isinstance(module, Bottleneck) and self.spec.zero_init_last:
                nn.init.zeros_(module.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def set_attention_impl(model: nn.Module, impl: str) -> None:
    """Select the attention backend of every SASA layer (architecture and weights unchanged)."""
    from sasa_bench.kernels import usable_backend

    usable_backend(impl)  # fail early on an unknown name or a missing library
    for module in model.modules():
        if isinstance(module, SASA2d):
            module.impl = impl


def build_model(spec: ModelSpec | ThirdPartySpec, *, attn_impl: str = "reference") -> nn.Module:
    """The network `spec` describes; a third-party spec is built by its library (it has no
    SASA layer, so `attn_impl` does not apply)."""
    if isinstance(spec, ThirdPartySpec):
        return spec.build()
    return ResNet(spec, attn_impl=attn_impl)


def model_cost(spec: ModelSpec) -> ModelCost:
    """Cost of the network `spec` describes, for one image at spec.resolution, from the block
    plan the builder uses (nothing is built or run). Third-party models have no analytic
    count: `sasa_bench.counters.model_cost_of` traces theirs."""
    if isinstance(spec, ThirdPartySpec):
        raise SpecError(f"{spec.name} has no analytic count (its cost is traced)")
    layers, _ = stem_cost(spec)
    plans = plan_blocks(spec)
    for plan in plans:
        layers += Bottleneck.cost(plan, spec)
    layers.append(linear_cost("fc", plans[-1].out_channels, spec.num_classes))
    return ModelCost(tuple(layers))

"""What training and evaluation share: the model fitted to the data, built and placed."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from sasa_bench.errors import SpecError
from sasa_bench.models.registry import NamedModel
from sasa_bench.models.resnet import build_model, plan_blocks
from sasa_bench.models.spec import ModelSpec
from sasa_bench.models.thirdparty import ThirdPartySpec
from sasa_bench.train.datasets import Dataset
from sasa_bench.train.distributed import World
from sasa_bench.train.loop import Step


def fit_to_data(model: NamedModel, dataset: Dataset, given: Collection[str]) -> NamedModel:
    """The model with the data's input size and class count, unless the user `given` them:
    `resnet26` on digits is `resnet26:num_classes=10,resolution=32`. A class count given
    that differs from the data's is an error; a third-party model is refused (sasa_bench
    trains its own models)."""
    if isinstance(model.spec, ThirdPartySpec):
        raise SpecError(
            f"{model.name}: train and eval take sasa_bench's own models (see `sasa-bench "
            "models`); third-party models are for profile, bench, compare and report"
        )
    options: dict[str, object] = {}
    if "resolution" not in given:
        options["resolution"] = dataset.resolution
    if "num_classes" not in given:
        options["num_classes"] = dataset.num_classes
    elif model.spec.num_classes != dataset.num_classes:
        raise SpecError(
            f"num_classes={model.spec.num_classes}, but {dataset.spec} has "
            f"{dataset.num_classes} classes"
        )
    fitted = model.replace(**options)
    plan_blocks(fitted.spec)  # raises SpecError if the resolution is too small for the net
    return fitted


def place_model(spec: ModelSpec, step: Step, *, attn_impl: str) -> nn.Module:
    """Built with the attention backend, on the step's device and memory layout."""
    model = build_model(spec, attn_impl=attn_impl).to(step.world.device)
    if step.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def run_info(world: World) -> dict[str, Any]:
    """How the processes ran (recorded in `config`, beside what was asked)."""
    return {"world_size": world.size, "device_type": world.device.type}

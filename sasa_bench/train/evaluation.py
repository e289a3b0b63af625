"""Evaluate a checkpoint on the test split of a data set; one Record(kind="eval")."""

from __future__ import annotations

from pathlib import Path

from sasa_bench.errors import SasaBenchError, SpecError
from sasa_bench.models.registry import NamedModel, parse_model
from sasa_bench.models.resnet import model_cost, plan_blocks
from sasa_bench.records import Record, append_record, environment
from sasa_bench.train.checkpoint import (
    CheckpointError,
    checkpoint_file,
    load_checkpoint,
    load_weights,
)
from sasa_bench.train.datasets import Dataset
from sasa_bench.train.distributed import close_world, init_world
from sasa_bench.train.loaders import make_loader
from sasa_bench.train.loop import Step, evaluate
from sasa_bench.train.progress import Progress
from sasa_bench.train.setup import place_model, run_info

WEIGHTS = ("auto", "ema", "raw")


def checkpoint_model(
    state: dict, path: str | Path, model: NamedModel | None, resolution: int | None
) -> NamedModel:
    """The checkpoint's model, at `resolution` if given. `model` (if given) must be the
    checkpoint's up to the resolution."""
    saved = parse_model(state["model_name"])
    if model is not None and model.spec.replace(resolution=saved.spec.resolution) != saved.spec:
        raise CheckpointError(f"{path} holds {saved.name}, not {model.name}")
    if resolution is None or resolution == saved.spec.resolution:
        return saved
    if saved.spec.attention.pos == "absolute" and "a" in saved.spec.stages:
        raise SpecError(
            f"{saved.name} has absolute positions, built for {saved.spec.resolution} only"
        )
    named = saved.replace(resolution=resolution)
    plan_blocks(named.spec)  # raises SpecError if the resolution is too small for the net
    return named


def evaluate_checkpoint(
    path: str | Path,
    dataset: Dataset,
    *,
    model: NamedModel | None = None,
    resolution: int | None = None,
    weights: str = "auto",
    batch_size: int = 256,
    device: str = "auto",
    amp: str | None = None,
    channels_last: bool = False,
    attn_impl: str = "reference",
    subset: int | None = None,
    results: str | Path | None = None,
    progress: Progress | None = None,
) -> Record:
    """Top-1, top-5 and loss of the checkpoint's `weights` ("auto": the EMA where the run kept
    one) on `dataset`'s test split, at the trained resolution unless `resolution` is given.
    The record is appended to `results` if given."""
    if weights not in WEIGHTS:
        raise SasaBenchError(f"weights must be one of {', '.join(WEIGHTS)}; got {weights!r}")
    for flag, value in (("--batch-size", batch_size), ("--subset", subset)):
        if value is not None and value < 1:  # --subset 0 evaluated one image, -3 all of them
            raise SasaBenchError(f"{flag} must be >= 1, got {value}")
    path = checkpoint_file(path)  # a run folder: its checkpoint.pt (named in the record)
    state = load_checkpoint(path)
    named = checkpoint_model(state, path, model, resolution)
    if tuple(state["classes"]) != dataset.classes:
        raise SasaBenchError(
            f"{path} was trained on {len(state['classes'])} classes that are not "
            f"{dataset.spec}'s {dataset.num_classes}"
        )
    if weights == "auto":
        weights = "ema" if state.get("ema") is not None else "raw"
    if weights == "ema" and state.get("ema") is None:
        raise SasaBenchError(f"{path} has no EMA weights (the run had no --ema)")
    world = init_world(device)
    try:
        step = Step(world, amp, channels_last)
        network = place_model(named.spec, step, attn_impl=attn_impl)
        load_weights(network, state["ema" if weights == "ema" else "model"], path)
        loader = make_loader(
            dataset, train=False, resolution=named.spec.resolution,
            batch_size=batch_size * world.size,
            world=world, seed=0, subset=subset,
        )  # fmt: skip
        if not world.is_main:
            progress = Progress(enabled=False)
        metrics = evaluate(network, loader, step=step, progress=progress or Progress())
    finally:
        close_world(world)
    record = Record(
        "eval",
        named.name,
        config={
            "data": dataset.spec, "checkpoint": str(path), "weights": weights,
            "batch_size": batch_size, "resolution": named.spec.resolution,
            "trained_resolution": parse_model(state["model_name"]).spec.resolution,
            "conventions": parse_model(state["model_name"]).spec.conventions(),
            "amp": amp, "channels_last": channels_last, "attn_impl": attn_impl,
            "subset": subset, **run_info(world),
        },
        metrics={
            "top1": metrics["top1"], "top5": metrics["top5"], "loss": metrics["loss"],
            "images": metrics["images"], "wall_time_s": metrics["seconds"],
            "images_per_s": metrics["images"] / max(metrics["seconds"], 1e-9),
            "epochs": state["epoch"],
        },
        cost=model_cost(named.spec).totals(),
        env=environment(str(world.device)),
    )  # fmt: skip
    if results is not None and world.is_main:
        append_record(results, record)
    return record

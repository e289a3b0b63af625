"""`sasa-bench eval MODEL --checkpoint PATH --data SPEC`: top-1/top-5 of a trained checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sasa_bench.cli import COMMANDS, values
from sasa_bench.cli.common import (
    add_data_arguments,
    add_execution_arguments,
    add_model_arguments,
    given_options,
    is_main_process,
    model_from_args,
    print_json,
)
from sasa_bench.train.checkpoint import checkpoint_file
from sasa_bench.train.datasets import open_dataset
from sasa_bench.train.evaluation import WEIGHTS, evaluate_checkpoint
from sasa_bench.train.setup import fit_to_data


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help=COMMANDS["eval"])
    add_model_arguments(parser)
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="checkpoint.pt of a run, or the run folder"
    )
    add_data_arguments(parser)
    run = parser.add_argument_group("run")
    run.add_argument(
        "--weights", choices=WEIGHTS, default="auto", help="auto = EMA where the run kept one"
    )
    run.add_argument("--batch-size", type=values.integer(1), default=256, help="per process")
    add_execution_arguments(run)


def run(args: argparse.Namespace) -> int:
    checkpoint = checkpoint_file(args.checkpoint)  # a missing one first, before the data
    dataset = open_dataset(args.data)
    given = given_options(args)
    model = fit_to_data(model_from_args(args), dataset, given)
    record = evaluate_checkpoint(
        checkpoint,
        dataset,
        model=model,
        resolution=model.spec.resolution if "resolution" in given else None,
        weights=args.weights,
        batch_size=args.batch_size,
        device=args.device,
        amp=args.amp,
        channels_last=args.channels_last,
        attn_impl=args.attn_impl,
        subset=args.subset,
        results=args.results,
    )
    if not is_main_process():
        return 0
    if args.json:
        print_json(dataclasses.asdict(record))
        return 0
    m, c = record.metrics, record.config
    print(
        f"{record.model} on {c['data']} ({c['weights']} weights of {c['checkpoint']}, "
        f"{m['epochs']} epochs): top-1 {m['top1']:.2f}% top-5 {m['top5']:.2f}% "
        f"loss {m['loss']:.4f} over {m['images']} images, {m['images_per_s']:.0f} images/s"
    )
    return 0

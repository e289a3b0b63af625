"""`sasa-bench train MODEL --data SPEC`: train, checkpoint every epoch, record the accuracy.

Runs as one process, under `torchrun --nproc_per_node N -m sasa_bench train ...` as N
(DistributedDataParallel), or with `--executor slurm` as one Slurm job of --nodes x
--tasks-per-node ranks. See docs/training.md and docs/cluster.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from sasa_bench.cli import COMMANDS, values
from sasa_bench.cli.common import (
    add_data_arguments,
    add_execution_arguments,
    add_model_arguments,
    add_slurm_arguments,
    given_options,
    is_main_process,
    model_from_args,
    print_json,
    slurm_options,
    thread_count,
)
from sasa_bench.errors import SasaBenchError
from sasa_bench.train.config import OPTIMIZERS, RECIPES, SCHEDULES, make_config
from sasa_bench.train.datasets import open_dataset
from sasa_bench.train.seeds import parse_seeds, summarize
from sasa_bench.train.setup import fit_to_data
from sasa_bench.train.trainer import train


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help=COMMANDS["train"])
    add_model_arguments(parser)
    add_data_arguments(parser)
    recipe = parser.add_argument_group("recipe (defaults from --recipe)")
    recipe.add_argument(
        "--recipe", choices=RECIPES, default="small", help="named hyperparameters (small)"
    )
    recipe.add_argument("--epochs", type=values.integer(1))
    recipe.add_argument("--batch-size", type=values.integer(1), help="global, split over processes")
    recipe.add_argument(
        "--lr", type=values.number(above=0), help="peak lr (default: the recipe's, batch-scaled)"
    )
    recipe.add_argument("--optimizer", choices=OPTIMIZERS)
    recipe.add_argument(
        "--momentum", type=values.number(0, below=1), help="SGD momentum / AdamW beta1"
    )
    recipe.add_argument("--warmup-epochs", type=values.number(0))
    recipe.add_argument("--schedule", choices=SCHEDULES)
    recipe.add_argument("--label-smoothing", type=values.number(0, below=1))
    recipe.add_argument("--weight-decay", type=values.number(0))
    recipe.add_argument(
        "--ema", type=values.number(0, below=1), metavar="DECAY", help="weight EMA decay; 0 = off"
    )
    recipe.add_argument(
        "--bn-momentum",
        type=values.number(above=0, maximum=1),
        help="torch convention (1 - BN decay)",
    )
    seeds = recipe.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seed", type=values.integer(0), default=0, help="one run with this seed (0)"
    )
    seeds.add_argument(
        "--seeds",
        type=seed_list,
        metavar="LIST",
        help="one run per seed, e.g. 0,1,2 (each in OUT/seed-N), then their mean ± sd",
    )
    run = parser.add_argument_group("run")
    add_execution_arguments(run)
    run.add_argument(
        "--workers", type=values.integer(0), default=4, help="loader processes (image folders)"
    )
    run.add_argument(
        "--threads",
        type=thread_count,
        help="torch intra-op threads on a CPU: N, or auto (the cores idle now); default 1",
    )
    run.add_argument(
        "--out", type=values.output_folder, help="run folder (default runs/MODEL-DATA)"
    )
    run.add_argument("--resume", action="store_true", help="continue the run in --out")
    run.add_argument("--overwrite", action="store_true", help="start over in a used --out")
    add_slurm_arguments(parser, training=True)


def seed_list(text: str) -> tuple[int, ...]:
    try:
        return parse_seeds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def default_out(model: str, data: str) -> Path:
    name = data.partition(":")[0] if ":" in data else data
    return Path("runs") / re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{model}-{name}")


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: the checkpoint of the last finished epoch, and how to go on."""
    if args.executor == "slurm":
        return ("the Slurm job goes on; the same command again follows it (scancel JOBID "
                "ends it; then --resume continues from its last checkpoint)")  # fmt: skip
    out = args.out
    if out is None:
        try:
            model = fit_to_data(model_from_args(args), open_dataset(args.data), given_options(args))
            out = default_out(model.name, args.data)
        except SasaBenchError:
            out = Path("runs") / "MODEL-DATA"
    where = f"{out}/seed-N" if args.seeds else str(out)
    return (f"the last finished epoch's checkpoint is in {where}; the same command with "
            "--resume continues from it")  # fmt: skip


def run_folder_of(args: argparse.Namespace) -> Path:
    """--out, or the default folder of the model fitted to the data."""
    if args.out:
        return args.out
    model = fit_to_data(model_from_args(args), open_dataset(args.data), given_options(args))
    return default_out(model.name, args.data)


def run(args: argparse.Namespace) -> int:
    options = slurm_options(args, run_folder_of(args) / "slurm")
    if options is not None:
        from sasa_bench.cluster.tasks import run_training

        records = run_training(args, options, out=run_folder_of(args), echo=print)
    else:
        records = train_runs(args)
    if not records or any(record.status != "ok" for record in records):
        return 1
    summaries = summarize(records)
    if args.seeds and is_main_process():
        for summary in summaries:
            seeds_text = ", ".join(map(str, summary.seeds))
            print(
                f"{summary.model} on {summary.data}, {summary.epochs} epochs: test top-1 "
                f"{summary.text(2)} %, mean ± sd over seeds {seeds_text}",
                flush=True,
            )
    if args.json and is_main_process():
        payload = [dataclasses.asdict(record) for record in records]
        print_json(payload[0] if not args.seeds else payload)
    return 0


def train_runs(args: argparse.Namespace) -> list:
    """Train as the flags say (one run, or one per seed) in this process; the final Records."""
    dataset = open_dataset(args.data)
    model = fit_to_data(model_from_args(args), dataset, given_options(args))
    flags = {
        name: getattr(args, name)
        for name in (
            "epochs", "batch_size", "lr", "optimizer", "momentum", "warmup_epochs", "schedule",
            "label_smoothing", "weight_decay", "ema", "bn_momentum", "subset", "amp",
            "device", "workers", "attn_impl", "threads",
        )
    }  # fmt: skip
    seeds = args.seeds or (args.seed,)
    out = args.out or default_out(model.name, args.data)
    records = []
    for seed in seeds:
        config = make_config(
            model=model.name,
            data=args.data,
            recipe=args.recipe,
            channels_last=args.channels_last,
            seed=seed,
            **flags,
        )
        run_out = out / f"seed-{seed}" if args.seeds else out
        # with --seeds, --resume continues the seeds begun and starts the others
        resume = args.resume and (not args.seeds or (run_out / "checkpoint.pt").exists())
        records.append(
            train(
                config,
                dataset,
                out=run_out,
                resume=resume,
                overwrite=args.overwrite,
                results=args.results,
                echo=lambda line: print(line, flush=True),
            )
        )
    return records

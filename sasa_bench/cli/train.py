"""`sasa-bench train MODEL --data SPEC`: train, checkpoint every epoch, record the accuracy.

Runs as one process, under `torchrun --nproc_per_node N -m sasa_bench train ...` as N
(DistributedDataParallel), or with `--executor slurm` as one Slurm job of --nodes x
--tasks-per-node ranks. See docs/training.md and docs/cluster.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable
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
    say,
    slurm_options,
    thread_count,
)
from sasa_bench.cluster.slurm import (
    JobBook,
    SlurmOptions,
    Submitted,
    Task,
    log_follower,
    run_tasks,
    task_key,
)
from sasa_bench.devices import resolve_device
from sasa_bench.errors import SasaBenchError
from sasa_bench.records import Record
from sasa_bench.train.config import OPTIMIZERS, RECIPES, SCHEDULES, make_config
from sasa_bench.train.datasets import open_dataset
from sasa_bench.train.seeds import parse_seeds, summarize
from sasa_bench.train.setup import fit_to_data
from sasa_bench.train.trainer import check_folder, train


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
    add_execution_arguments(run, here=False)
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
    if args.executor == "local":
        slurm_options(args, Path())  # refuses the Slurm flags
        resolve_device(args.device, kinds=("cpu", "cuda"))  # a missing GPU, before any work
        records = train_runs(args)
    else:
        out = run_folder_of(args)
        records = train_on_slurm(args, slurm_options(args, out / "slurm"), out=out, echo=say)
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


def train_runs(args: argparse.Namespace) -> list[Record]:
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
                echo=say,
            )
        )
    return records


class TrainTask:
    """`sasa-bench train ARGV` as one rank of a Slurm job (ARGV as the user gave it, --executor
    slurm included: each rank trains in its own process, taking its place in the
    torch.distributed world from Slurm's variables). Pickled by submitit; `checkpoint` makes
    submitit requeue the job at its time limit as at a pre-emption, and a requeued rank resumes
    from OUT's last checkpoint."""

    def __init__(self, argv: list[str], out: Path) -> None:
        self.argv = list(argv)
        self.out = Path(out)

    def __call__(self) -> list[Record]:
        import submitit

        from sasa_bench.cli import build_parser

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        args = build_parser("train").parse_args(self.argv)
        args.executor = "local"
        requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
        if requeued and any(self.out.glob("**/checkpoint.pt")):  # go on, never start over
            args.resume, args.overwrite = True, False
        return train_runs(args)

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def job_parameters(args: argparse.Namespace, options: SlurmOptions) -> dict[str, object]:
    """sbatch parameters of the training job: --nodes x --tasks-per-node ranks."""
    params = options.parameters() | {"nodes": args.nodes, "ntasks_per_node": ranks_per_node(args)}
    params.pop("array_parallelism")
    params.pop("gpus_per_task", None)
    if args.gpus_per_node:
        params["gpus_per_node"] = args.gpus_per_node
    return params


def ranks_per_node(args: argparse.Namespace) -> int:
    return args.tasks_per_node or max(args.gpus_per_node, 1)


def train_on_slurm(
    args: argparse.Namespace, options: SlurmOptions, *, out: Path, echo: Callable[[str], None]
) -> list[Record]:
    """The training as one Slurm job: submitted (or, after an interrupted wait, followed
    again), rank 0's log echoed as it grows; rank 0's Records (failed ones with Slurm's reason
    when the job ended without them). The run folders are checked here, before submitting."""
    key = task_key(["train", args.argv])
    seeds = args.seeds or (args.seed,)
    folders = [out / f"seed-{seed}" for seed in seeds] if args.seeds else [out]
    following = key in JobBook(options.folder / "jobs.json").jobs  # its folder is in use
    for folder in [] if following else folders:
        resume = args.resume and (not args.seeds or (folder / "checkpoint.pt").exists())
        check_folder(folder / "checkpoint.pt", resume=resume, overwrite=args.overwrite)

    def failed(reason: str) -> list[Record]:
        hint = f"; {out} keeps the last finished epoch's checkpoint: add --resume to go on"
        return [Record("train", args.model, status="failed", error=reason + hint)]

    def submitted(what: Submitted) -> None:
        for job_id in what.submitted:
            echo(f"submitted Slurm job {job_id}: {args.nodes} node(s) x {ranks_per_node(args)} "
                 f"rank(s); logs in {options.folder}")  # fmt: skip
        for job_id in what.followed:
            echo(f"following Slurm job {job_id}, submitted before")

    task = Task(key, TrainTask(args.argv, out), (), failed)
    (records,) = run_tasks(
        [task],
        options,
        parameters=job_parameters(args, options),
        on_submitted=submitted,
        on_poll=log_follower(echo),
    )
    for record in records:
        if record.status != "ok":
            echo(f"train: failed: {record.error}")
    return records

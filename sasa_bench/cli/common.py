"""Flags and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console

from sasa_bench.cli import values
from sasa_bench.cluster.slurm import SlurmOptions, require_slurm
from sasa_bench.errors import SasaBenchError
from sasa_bench.kernels import BACKENDS
from sasa_bench.measure.load import free_cores
from sasa_bench.models.registry import NamedModel, with_options
from sasa_bench.models.spec import ATTENTION_ALIASES, LOGITS, POSITIONAL, STEMS
from sasa_bench.train.config import AMP_DTYPES

#: the override flags, each named as its option of the model grammar
MODEL_FLAGS = (
    "stages",
    "stem",
    "k",
    "heads",
    "pos",
    "logits",
    "width",
    "resolution",
    "num_classes",
)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """One positional MODEL plus the override flags."""
    parser.add_argument(
        "model",
        help="preset or preset:KEY=VALUE,..., or timm:NAME / torchvision:NAME (see `sasa-bench "
        "models`)",
    )
    add_override_arguments(parser)


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model overrides")
    group.add_argument(
        "--stages", metavar="SSSS", help="mixer per layer group: c=conv, a=attention"
    )
    group.add_argument("--stem", choices=STEMS)
    group.add_argument("--k", type=int, metavar="K", help="spatial extent of attention (odd)")
    group.add_argument("--heads", type=int)
    group.add_argument("--pos", choices=POSITIONAL, help="positional encoding")
    group.add_argument("--logits", choices=LOGITS)
    group.add_argument("--width", type=values.number(above=0), help="width multiplier")
    group.add_argument(
        "--resolution", type=values.integer(1), metavar="R", help="input size (default 224)"
    )
    group.add_argument("--num-classes", type=values.integer(1))


def model_from_args(args: argparse.Namespace, text: str | None = None) -> NamedModel:
    """The model `text` (default: the MODEL argument) with the override flags applied."""
    return with_options(args.model if text is None else text, flag_options(args))


def flag_options(args: argparse.Namespace) -> dict[str, object]:
    """The model options set by override flags."""
    return {flag: getattr(args, flag) for flag in MODEL_FLAGS if getattr(args, flag) is not None}


def console() -> Console:
    """Rich console; when piped, wide enough that tables are never squeezed (rich sizes a
    table to its content, so a wide console adds no padding)."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=400, no_color=True)


def say(line: str, stream: TextIO | None = None) -> None:
    """A line on `stream` (default stdout) in one write, flushed: a Ctrl-C lands before or
    after it, never between the text and its newline (print writes them apart)."""
    stream = stream or sys.stdout
    stream.write(line + "\n")
    stream.flush()


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default="digits",
        metavar="SPEC",
        help="digits (embedded, default) | mnist5k (embedded) | cifar10:PATH | imagefolder:PATH",
    )
    parser.add_argument(
        "--subset",
        type=values.integer(1),
        metavar="N",
        help="smoke test: at most N train and N test images",
    )


def add_execution_arguments(group: argparse._ArgumentGroup, *, here: bool = True) -> None:
    """How a run executes (not what it computes): shared by train and eval. `here=False`:
    the device name only is checked at parse time (the command may run on Slurm's nodes)."""
    group.add_argument(
        "--device",
        default="auto",
        type=values.device(auto=True, here=here),
        help="auto (a GPU where there is one), cpu, cuda or cuda:N",
    )
    group.add_argument("--amp", choices=AMP_DTYPES, help="autocast dtype (default: fp32)")
    group.add_argument("--channels-last", action="store_true")
    group.add_argument(
        "--attn-impl", default="reference", choices=tuple(BACKENDS), help="attention backend"
    )
    group.add_argument(
        "--results",
        type=values.output_file,
        help="JSONL file for the final record (train: OUT/results.jsonl)",
    )
    group.add_argument("--json", action="store_true", help="print the final record as JSON")


def given_options(args: argparse.Namespace) -> set[str]:
    """Model options the user set, in MODEL's text or by an override flag."""
    _, _, text = args.model.partition(":")
    keys = {item.partition("=")[0].strip() for item in text.split(",") if item.strip()}
    keys |= set(flag_options(args))
    return {ATTENTION_ALIASES.get(key, key) for key in keys}


def is_main_process() -> bool:
    """Rank 0 of a torchrun world (or the only process)."""
    return os.environ.get("RANK", "0") == "0"


def thread_count(text: str) -> int:
    """--threads: N >= 1, or auto: the cores idle now (measured over a quarter second)."""
    if text == "auto":
        return free_cores()
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a thread count or auto, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (or auto), got {value}")
    return value


def key_value(text: str) -> tuple[str, str]:
    """--slurm-option KEY=VALUE: one more `#SBATCH --KEY=VALUE` line."""
    key, sep, value = text.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (an sbatch option), got {text!r}")
    return key, value.strip()


def add_slurm_arguments(parser: argparse.ArgumentParser, *, training: bool = False) -> None:
    """--executor and the Slurm options (docs/cluster.md). A sweep submits one array task per
    item (`--slurm-gpus-per-task`); a training one job of --nodes x --tasks-per-node ranks."""
    group = parser.add_argument_group("cluster (docs/cluster.md)")
    group.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default="local",
        help="local: on this machine (default); slurm: submitted through submitit",
    )
    group.add_argument("--slurm-partition", metavar="NAME", help="default: the cluster's")
    group.add_argument(
        "--slurm-time",
        type=values.integer(2),
        default=60,
        metavar="MIN",
        help="time limit per job in minutes (default 60; at least 2: submitit's signal comes "
        "90 s before it)",
    )
    group.add_argument(
        "--slurm-cpus-per-task",
        type=values.integer(1),
        metavar="N",
        help="default: --threads, else 1",
    )
    if training:
        group.add_argument("--nodes", type=values.integer(1), default=1, help="default 1")
        group.add_argument(
            "--gpus-per-node", type=values.integer(0), default=0, metavar="G", help="default 0"
        )
        group.add_argument(
            "--tasks-per-node",
            type=values.integer(1),
            metavar="N",
            help="ranks per node (default: --gpus-per-node, at least 1)",
        )
    else:
        group.add_argument(
            "--slurm-gpus-per-task",
            type=values.integer(0),
            metavar="N",
            help="default: 1 with --device cuda, else 0",
        )
        group.add_argument(
            "--slurm-array-parallelism",
            type=values.integer(1),
            default=256,
            metavar="N",
            help="tasks running at once (default 256)",
        )
    group.add_argument(
        "--slurm-option",
        type=key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any further sbatch option, e.g. account=proj or constraint=h100 (repeatable)",
    )
    group.add_argument(
        "--slurm-folder",
        type=values.output_folder,
        metavar="DIR",
        help="submitit's logs and job list, on a file system the nodes share (default: beside "
        "the results)",
    )


#: the flags of add_slurm_arguments that mean nothing without --executor slurm
SLURM_FLAGS = (
    "slurm_partition", "slurm_time", "slurm_cpus_per_task", "slurm_gpus_per_task", "slurm_folder",
    "slurm_array_parallelism", "slurm_option", "nodes", "gpus_per_node", "tasks_per_node",
)  # fmt: skip


def slurm_options(args: argparse.Namespace, folder: Path) -> SlurmOptions | None:
    """The SlurmOptions of --executor slurm (`folder` unless --slurm-folder), after checking
    that submitit and a Slurm with accounting are here; None for --executor local, which
    refuses the Slurm flags."""
    if args.executor == "local":
        parser = argparse.ArgumentParser()
        add_slurm_arguments(parser, training=hasattr(args, "nodes"))
        defaults = vars(parser.parse_args([]))  # what the flags are when not given
        for name in SLURM_FLAGS:
            if getattr(args, name, None) != defaults.get(name):
                flag = "--" + name.replace("_", "-")
                raise SasaBenchError(f"{flag} is a Slurm option: add --executor slurm")
        return None
    require_slurm()
    cuda = str(getattr(args, "device", "cpu")).startswith("cuda")
    gpus = getattr(args, "slurm_gpus_per_task", None)
    return SlurmOptions(
        folder=args.slurm_folder or folder,
        partition=args.slurm_partition,
        time_min=args.slurm_time,
        cpus_per_task=args.slurm_cpus_per_task or getattr(args, "threads", None) or 1,
        gpus_per_task=(1 if cuda else 0) if gpus is None else gpus,
        array_parallelism=getattr(args, "slurm_array_parallelism", SlurmOptions.array_parallelism),
        extra=tuple(args.slurm_option),
    )

"""Flags and output helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from sasa_bench.models.registry import NamedModel, parse_model
from sasa_bench.models.spec import LOGITS, POSITIONAL, STEMS

#: flag -> model option (the names of the model grammar)
MODEL_FLAGS = {
    "stages": "stages",
    "stem": "stem",
    "k": "k",
    "heads": "heads",
    "pos": "pos",
    "logits": "logits",
    "width": "width",
    "resolution": "resolution",
    "num_classes": "num_classes",
}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """One positional MODEL plus the override flags."""
    parser.add_argument("model", help="preset or preset:KEY=VALUE,... (see `sasa-bench models`)")
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
    group.add_argument("--width", type=float, help="width multiplier")
    group.add_argument("--resolution", type=int, metavar="R", help="input size (default 224)")
    group.add_argument("--num-classes", type=int)


def with_overrides(text: str, args: argparse.Namespace) -> NamedModel:
    """The model `text` (preset[:options]) with the override flags appended to its options."""
    options = [
        f"{option}={getattr(args, flag)}"
        for flag, option in MODEL_FLAGS.items()
        if getattr(args, flag) is not None
    ]
    if options:
        text += ("," if ":" in text else ":") + ",".join(options)
    return parse_model(text)


def model_from_args(args: argparse.Namespace) -> NamedModel:
    return with_overrides(args.model, args)


def console() -> Console:
    """Rich console; when piped, wide enough that tables are never squeezed (rich sizes a
    table to its content, so a wide console adds no padding)."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=400, no_color=True)


def print_json(obj: object) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (SI prefixes)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def opt(value: object) -> str:
    """A table cell for a value that may be missing."""
    return "-" if value is None else str(value)

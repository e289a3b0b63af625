"""`sasa-bench models`: the presets with their parameters and FLOPs at 224x224; with patterns
(`sasa-bench models 'timm:halo*'`), the timm or torchvision models of those names."""

from __future__ import annotations

import argparse

from rich.table import Table

from sasa_bench import paper
from sasa_bench.cli import COMMANDS
from sasa_bench.cli.common import console, print_json
from sasa_bench.errors import SasaBenchError
from sasa_bench.format import cell
from sasa_bench.models.registry import PRESETS, describe
from sasa_bench.models.resnet import model_cost
from sasa_bench.models.thirdparty import expand, is_thirdparty, parse_thirdparty


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help=COMMANDS["models"])
    parser.add_argument(
        "patterns",
        nargs="*",
        metavar="SOURCE:PATTERN",
        help="list third-party names instead: timm:PATTERN or torchvision:PATTERN (fnmatch)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def thirdparty_rows(patterns: list[str]) -> list[dict[str, object]]:
    """Each matching name with the input size and class count it is built for by default."""
    rows = []
    for pattern in patterns:
        if not is_thirdparty(pattern):
            raise SasaBenchError(
                f"unrecognized arguments: {pattern} (models lists the presets, or with "
                "timm:PATTERN or torchvision:PATTERN the third-party names)"
            )
        for name in expand(pattern):
            spec = parse_thirdparty(name)
            rows.append(
                {"model": spec.name, "resolution": spec.resolution, "num_classes": spec.num_classes}
            )
    return rows


def preset_rows() -> list[dict[str, object]]:
    rows = []
    for name, spec in PRESETS.items():
        cost = model_cost(spec)
        reported = paper.row_for(name, "1")
        rows.append(
            {
                "model": name,
                "description": describe(name),
                "stem": spec.stem,
                "stages": spec.stages,
                "params": cost.params,
                "macs": cost.macs,
                "flops": cost.flops,
                "paper": None
                if reported is None
                else {
                    "table": reported.table,
                    "flops_b": reported.flops_b,
                    "params_m": reported.params_m,
                    "top1": reported.top1,
                },
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    if args.patterns:
        found = thirdparty_rows(args.patterns)
        if args.json:
            print_json(found)
            return 0
        table = Table(title="third-party models (built without weights; MODEL:resolution=N)")
        for column in ("model", "default resolution", "classes"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for row in found:
            table.add_row(row["model"], str(row["resolution"]), str(row["num_classes"]))
        console().print(table)
        return 0
    rows = preset_rows()
    if args.json:
        print_json(rows)
        return 0
    table = Table(title="sasa_bench presets (224x224; FLOPs = 2 x MACs)")
    for column in ("model", "description", "stem", "stages"):
        table.add_column(column)
    for column in ("params (M)", "GFLOPs", "paper params (M)", "paper GFLOPs"):
        table.add_column(column, justify="right")
    for row in rows:
        ref = row["paper"] or {}
        table.add_row(
            row["model"],
            row["description"],
            row["stem"],
            row["stages"],
            f"{row['params'] / 1e6:.2f}",
            f"{row['flops'] / 1e9:.2f}",
            cell(ref.get("params_m")),
            cell(ref.get("flops_b")),
        )
    console().print(table)
    console().print("paper columns: Table 1 of Ramachandran et al. 2019 (reported, not measured)")
    return 0

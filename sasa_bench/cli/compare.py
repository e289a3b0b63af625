"""`sasa-bench compare A.jsonl B.jsonl [...]`: the same measurements side by side, with ratios."""

from __future__ import annotations

import argparse
import sys

from rich.table import Table

from sasa_bench.cli import COMMANDS
from sasa_bench.cli.common import console, print_json
from sasa_bench.format import to_csv, to_markdown
from sasa_bench.report.compare import (
    ACCURACY_METRICS,
    ENV_FIELDS,
    IDENTITY,
    Comparison,
    compare,
    load_labelled,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compare", help=COMMANDS["compare"])
    parser.add_argument("files", nargs="+", metavar="FILE.jsonl")
    parser.add_argument(
        "--by",
        default="file",
        metavar="FIELD",
        help="one column per value of: file (default), "
        + ", ".join(n.replace("_", "-") for n in (*IDENTITY, *ENV_FIELDS)),
    )
    parser.add_argument(
        "--metric",
        default="images_per_s",
        help="a metrics field: images_per_s (default), median_ms, min_ms, peak_rss_bytes, "
        "peak_allocated_bytes, joules_per_image, power_mean_w, ...; top1 or top5: the training "
        "and eval records, mean ± sd over seeds (n)",
    )
    parser.add_argument("--baseline", help="the column the ratios divide by (default: first)")
    parser.add_argument("--format", choices=("table", "markdown", "csv", "json"), default="table")
    parser.add_argument("--json", action="store_true", help="same as --format json")


def run(args: argparse.Namespace) -> int:
    kinds = ("train", "eval") if args.metric in ACCURACY_METRICS else ("bench",)
    result = compare(
        load_labelled(args.files, kinds), by=args.by, metric=args.metric, baseline=args.baseline
    )
    fmt = "json" if args.json else args.format
    if fmt == "json":
        print_json(result.to_dict())
    elif fmt == "csv":
        sys.stdout.write(to_csv(result.headers(), result.table_rows(rounded=False)))
    elif fmt == "markdown":
        sys.stdout.write(to_markdown(result.headers(), result.table_rows()))
    else:
        print_table(result)
    return 0


def print_table(result: Comparison) -> None:
    """Fields that tell the columns apart go under their names; those shared by all columns
    into the caption."""
    described = result.column_fields
    shared = {
        name: value
        for name, value in described[result.baseline].items()
        if all(described[column].get(name) == value for column in result.columns)
    }
    table = Table(
        title=f"{result.metric} by {result.by} (ratios to {result.baseline})",
        caption=", ".join(f"{k}={v}" for k, v in shared.items()) or None,
    )
    for name in result.key_fields:
        table.add_column(name, no_wrap=True)
    for column in result.columns:
        own = ", ".join(f"{k}={v}" for k, v in described[column].items() if k not in shared)
        table.add_column(column + (f"\n{own}" if own else ""), justify="right")
    for column in result.columns[1:]:
        table.add_column(f"{column}\n/ {result.baseline}", justify="right")
    for row in result.table_rows():
        table.add_row(*(str(cell) for cell in row))
    console().print(table)

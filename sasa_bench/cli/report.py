"""`sasa-bench report [STUDY ...]`: measure what is missing and write the report folder."""

from __future__ import annotations

import argparse

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sasa_bench.cli.common import console
from sasa_bench.report.build import build_report
from sasa_bench.report.study import DEFAULT_STUDIES, available


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="the paper's tables and trade-off plots, measured")
    parser.add_argument(
        "studies",
        nargs="*",
        metavar="STUDY",
        help=f"experiments/<STUDY>.py (default: {' '.join(DEFAULT_STUDIES)}, "
        "smoke); known: " + ", ".join(available()),
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default cpu)")
    parser.add_argument("--smoke", action="store_true", help="CPU-sized studies (minutes)")
    parser.add_argument(
        "--results",
        nargs="+",
        default=[],
        metavar="FILE",
        help="records to use (e.g. training runs' results.jsonl)",
    )
    parser.add_argument("--out", help="report folder (default: reports/<environment>)")


def run(args: argparse.Namespace) -> int:
    smoke = args.smoke or not args.studies  # the bare command is the CPU-sized main job
    out = console()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=True) as progress:
        folder = build_report(
            args.studies or None,
            device=args.device,
            smoke=smoke,
            results=args.results,
            out=args.out,
            progress=progress,
        )
    out.print(f"report: {folder / 'index.html'} (and report.md, figures/, tables/, records.jsonl)")
    return 0

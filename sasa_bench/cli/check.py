"""`sasa-bench check --baseline FILE`: regression checks for CI (docs/regression.md).

Exit codes: 0 all within bounds, 1 a regression (each listed with old, new, change, p-value),
2 could not run (no or bad baseline, a measurement failed, a check without baseline values).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sasa_bench.cli import COMMANDS, values
from sasa_bench.cli.common import console, print_json
from sasa_bench.devices import check_device
from sasa_bench.errors import SasaBenchError
from sasa_bench.records import load_records
from sasa_bench.regression import (
    Baseline,
    CheckReport,
    default_baseline,
    load_baseline,
    run_check,
    save_baseline,
)
from sasa_bench.regression.summary import (
    HEADERS,
    environment_line,
    finding_cells,
    sorted_findings,
    summary_line,
    to_markdown_summary,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("check", help=COMMANDS["check"])
    parser.add_argument("--baseline", required=True, metavar="FILE", help="baseline JSON file")
    parser.add_argument(
        "--tolerance",
        type=fraction,
        metavar="PCT",
        help="speed tolerance, e.g. 10%% or 0.1 (default: the file's, per check)",
    )
    parser.add_argument(
        "--update-baseline",
        action="store_true",
        help="measure and rewrite FILE (created with the default checks if missing)",
    )
    parser.add_argument(
        "--results",
        nargs="+",
        metavar="FILE.jsonl",
        help="take model pairs from `sasa-bench bench` records instead of timing them",
    )
    parser.add_argument("--device", help="run on this device instead of the file's (cuda:1, ...)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--markdown", type=values.output_file, metavar="FILE", help="write a Markdown summary"
    )


def fraction(text: str) -> float:
    """'10%' or '0.1' -> 0.1."""
    try:
        value = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a tolerance: {text!r} (10% or 0.1)") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a tolerance: {text!r} (a finite 10% or 0.1)")
    if value < 0:
        raise argparse.ArgumentTypeError(f"tolerance must be >= 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.device and not args.results:  # records name their device; a live run needs it here
        check_device(args.device)  # "no GPU" first, not a complaint about the file's settings
    if args.markdown and not Path(args.markdown).parent.is_dir():  # found out before timing
        raise SasaBenchError(f"--markdown {args.markdown}: no folder {Path(args.markdown).parent}")
    path = Path(args.baseline)
    if args.update_baseline:  # it is rewritten after the timing: found out before it
        try:
            values.output_file(args.baseline)
        except argparse.ArgumentTypeError as error:
            raise SasaBenchError(f"--baseline (with --update-baseline): {error}") from None
    creating = args.update_baseline and not path.exists()
    baseline = default_baseline(args.device or "cpu") if creating else load_baseline(path)
    overrides = {"device": args.device} if args.device else {}
    if args.update_baseline and args.tolerance is not None:
        overrides["tolerance"] = args.tolerance  # stored in the new file
    baseline.settings = dataclasses.replace(baseline.settings, **overrides)
    records = load_records(args.results) if args.results else None
    progress = Console(stderr=True)
    with progress.status("checking ...") as status:
        result = run_check(
            baseline, tolerance=args.tolerance, records=records, progress=status.update
        )
    report = result.report
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.markdown:
        try:
            Path(args.markdown).write_text(to_markdown_summary(report, str(path)), "utf-8")
        except OSError as error:
            raise SasaBenchError(f"cannot write --markdown {args.markdown}: {error}") from None
    if args.json:
        print_json(report.to_dict())
    elif not creating:
        print_table(report, str(path))
    if not args.update_baseline:
        return report.exit_code
    if result.updated is None:
        print(f"sasa-bench check: {path} not updated: a check could not run", file=sys.stderr)
        return 2
    save_baseline(result.updated, path)
    if not args.json:
        print_measured(result.updated, path)
    return 0


def print_measured(baseline: Baseline, path: Path) -> None:
    out = console()
    for check in baseline.speed:
        m = check.baseline
        out.print(
            f"{check.name}: {check.a} / {check.b} = {m.ratio:.4g} "
            f"({m.a_ms:.3f} / {m.b_ms:.3f} ms, {baseline.settings.timer})"
        )
    out.print(
        f"wrote {path}: costs of {len(baseline.costs)} models, {len(baseline.speed)} speed checks"
    )


def print_table(report: CheckReport, baseline_path: str) -> None:
    out = console()
    rows = sorted_findings(report)
    if rows:
        table = Table(title=f"sasa-bench check against {baseline_path}")
        for header in HEADERS:
            right = header in ("old", "new", "change", "p")
            table.add_column(header, justify="right" if right else "left")
        for finding in rows:
            style = {"regression": "bold red", "error": "yellow", "improved": "green"}
            table.add_row(*finding_cells(finding), style=style.get(finding.status))
        out.print(table)
    out.print(
        f"baseline made {report.baseline_created or '-'}: {environment_line(report.baseline_env)}"
    )
    out.print(summary_line(report))

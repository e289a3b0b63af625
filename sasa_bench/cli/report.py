"""`sasa-bench report [STUDY ...]`: measure what is missing and write the report folder.

Progress: on a terminal, a rich bar with each finished item printed above it; off a terminal (a
log file, CI), one plain line per finished measurement and per training epoch, each with the
time elapsed, so that a log shows what is happening.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sasa_bench.cli import COMMANDS, values
from sasa_bench.cli.common import add_slurm_arguments, console, say, slurm_options
from sasa_bench.report.build import REPORTS_DIR, ReportProgress, build_report, folder_name
from sasa_bench.report.study import DEFAULT_STUDIES, available


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help=COMMANDS["report"])
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
    parser.add_argument(
        "--out", type=values.output_folder, help="report folder (default: reports/<environment>)"
    )
    add_slurm_arguments(parser)


class Lines(ReportProgress):
    """One line per event, with the seconds since the report started."""

    def __init__(self, stream=None) -> None:  # None: sys.stdout when printing
        self.stream, self.started, self.total, self.done = stream, time.perf_counter(), 0, 0

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _print(self, text: str) -> None:
        stamp = f"[{time.perf_counter() - self.started:7.1f} s]"
        say(f"{stamp} {text}", self.stream)

    def begin(self, total: int) -> None:
        self.total = total
        self._print(f"{total} measurement(s) to make" if total else "nothing to measure")

    def start(self, label: str) -> None:
        self._print(f"{self.done + 1}/{self.total} {label} ...")

    def finish(self, label: str, seconds: float, outcome: str) -> None:
        self.done += 1
        self._print(f"{self.done}/{self.total} {label}: {outcome} ({seconds:.1f} s)")

    def note(self, text: str) -> None:
        self._print(f"  {text}")


class Bar(Lines):
    """A rich progress bar; finished items and notes are printed above it."""

    def __init__(self, out: Console) -> None:
        super().__init__()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        self.bar = Progress(*columns, console=out, transient=True)
        self.task = self.bar.add_task("measuring", total=None)

    def __enter__(self) -> Bar:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def _print(self, text: str) -> None:
        self.bar.console.print(text, markup=False, highlight=False)

    def begin(self, total: int) -> None:
        self.total = total
        self.bar.update(self.task, total=total)

    def start(self, label: str) -> None:
        self.bar.update(self.task, description=label)

    def finish(self, label: str, seconds: float, outcome: str) -> None:
        super().finish(label, seconds, outcome)
        self.bar.advance(self.task)


def report_folder(args: argparse.Namespace) -> Path:
    smoke = args.smoke or not args.studies
    return Path(args.out) if args.out else REPORTS_DIR / folder_name(args.device, smoke)


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: every finished measurement, and how to go on."""
    records = report_folder(args) / "records.jsonl"
    if args.executor == "slurm":
        return (f"the measurements that ended are in {records}; the submitted ones go on in "
                "Slurm: the same command again waits for them and renders the report")  # fmt: skip
    return f"the finished measurements are in {records}; the same command again resumes there"


def run(args: argparse.Namespace) -> int:
    smoke = args.smoke or not args.studies  # the bare command is the CPU-sized main job
    slurm = slurm_options(args, report_folder(args) / "slurm")
    out = console()
    with Bar(out) if out.is_terminal else Lines() as progress:
        folder = build_report(
            args.studies or None, device=args.device, smoke=smoke, results=args.results,
            out=report_folder(args), progress=progress, slurm=slurm,
        )  # fmt: skip
    out.print(f"report: {folder / 'index.html'} (and report.md, figures/, tables/, records.jsonl)")
    return 0

"""`sasa-bench`: one console entry point; one module per subcommand, each with a plain run().

Whatever a command raises ends as one line: a user error (`SasaBenchError`) with exit code 2,
Ctrl-C with 130 and what was kept (a command's `interrupted(args)` says it, with the command
that resumes), anything else with 1 and the path of a log file holding the traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from sasa_bench import __version__
from sasa_bench.errors import SasaBenchError

#: the subcommands, each a module of this package with add_parser() and run(), and its line of
#: `sasa-bench --help`. A command's module (and torch with it) is imported only when it runs,
#: so that `sasa-bench --help` and a mistyped command answer at once.
COMMANDS: dict[str, str] = {
    "bench": "measure throughput, latency, memory and energy",
    "check": "compare costs, speed ratios and peak memory with a baseline (exit 1: regression)",
    "compare": "bench (or accuracy) records of several files side by side",
    "eval": "evaluate a checkpoint on a test split; eval record",
    "kernels": "list, check (--check) or benchmark (--bench) backends",
    "models": "list model presets with params and GFLOPs at 224",
    "profile": "params, MACs, FLOPs and activations per layer",
    "report": "the paper's tables and trade-off plots, measured",
    "train": "train a model; checkpoints, epoch log, final record",
}


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{name}")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of `command` in full, and a one-line entry for every other command (every
    command in full when `command` is "all")."""
    parser = Parser(
        prog="sasa-bench",
        description="Build, count, measure and report Stand-Alone Self-Attention (SASA) vision "
        "models: sasa-bench COMMAND --help for each command.",
    )
    parser.add_argument("--version", action="version", version=f"sasa-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, text in COMMANDS.items():
        if command in (name, "all"):
            command_module(name).add_parser(sub)
        else:
            sub.add_parser(name, help=text, add_help=False)
    return parser


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that does not start with a dash."""
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    return word if word in COMMANDS else None


def crash_log(error: BaseException, argv: Sequence[str]) -> Path:
    """Write the traceback of an unexpected error to a log file; its path."""
    folder = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = f"sasa-bench {' '.join(argv)}\n\n" + "".join(traceback.format_exception(error))
    for parent in (folder / "sasa_bench", Path(tempfile.gettempdir())):
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path = parent / f"sasa-bench-crash-{stamp}-{os.getpid()}.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    raise error


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(command_of(argv)).parse_args(argv)
    args.argv = argv  # what a Slurm task parses again on its node
    command = command_module(args.command)
    try:
        return command.run(args)
    except SasaBenchError as error:
        print(f"sasa-bench {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = command.interrupted(args) if hasattr(command, "interrupted") else None
        print(f"sasa-bench {args.command}: interrupted" + (f"; {kept}" if kept else ""),
              file=sys.stderr)  # fmt: skip
        return 130
    except BrokenPipeError:  # `sasa-bench ... | head`
        return 0
    except Exception as error:  # a bug: one line for the user, the traceback in a file
        log = crash_log(error, argv)
        print(f"sasa-bench {args.command}: internal error: {type(error).__name__}: {error} "
              f"(traceback in {log}; please report it)", file=sys.stderr)  # fmt: skip
        return 1

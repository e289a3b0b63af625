"""`sasa-bench`: one console entry point; one module per subcommand, each with a plain run()."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from sasa_bench import __version__
from sasa_bench.errors import SasaBenchError


def _discover() -> dict[str, ModuleType]:
    """Every module of this package with add_parser() and run() is a subcommand."""
    commands = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser") and hasattr(module, "run"):
            commands[info.name] = module
    return commands


COMMANDS = _discover()


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="sasa-bench",
        description="Build, count, measure and report Stand-Alone Self-Attention (SASA) vision "
        "models: sasa-bench COMMAND --help for each command.",
    )
    parser.add_argument("--version", action="version", version=f"sasa-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except SasaBenchError as error:
        print(f"sasa-bench {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sasa-bench ... | head`
        return 0

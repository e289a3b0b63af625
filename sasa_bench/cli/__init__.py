"""`sasa-bench`: one console entry point; one module per subcommand, each with a plain run()."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sasa_bench import __version__
from sasa_bench.cli import models, profile
from sasa_bench.errors import SasaBenchError

COMMANDS = {"models": models, "profile": profile}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sasa-bench", description=__doc__)
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

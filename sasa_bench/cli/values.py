"""argparse types for the flags' values: a bad value is `argument --FLAG: why` (one line, exit 2)
at parse time, before any work starts. argparse puts the flag's name in front of the message,
as the user wrote it (`--batch-size` or `--batch-sizes`), so every message names its flag.

Not a subcommand: the commands are the modules named in `sasa_bench.cli.COMMANDS`.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from sasa_bench.devices import DTYPES, KINDS, check_device
from sasa_bench.errors import SasaBenchError


def integer(minimum: int | None = None) -> Callable[[str], int]:
    """An integer, at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(
    minimum: float | None = None,
    *,
    above: float | None = None,
    below: float | None = None,
    maximum: float | None = None,
) -> Callable[[str], float]:
    """A finite float: at least `minimum`, above `above`, below `below`, at most `maximum`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}, got {text}")
        if below is not None and not value < below:
            raise argparse.ArgumentTypeError(f"must be < {below:g}, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def integers(minimum: int | None = None, example: str = "1,8,64") -> Callable[[str], list[int]]:
    """A comma list of integers, each at least `minimum`."""

    def parse(text: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected integers like {example}, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected integers like {example}, got {text!r}")
        low = [v for v in values if minimum is not None and v < minimum]
        if low:
            raise argparse.ArgumentTypeError(
                f"each value must be >= {minimum}, got {', '.join(map(str, low))} in {text!r}"
            )
        return values

    parse.__name__ = "integers"
    return parse


def choices(allowed: Sequence[str], what: str = "name") -> Callable[[str], list[str]]:
    """A comma list of names, each one of `allowed` (`what` they are, for the message)."""

    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            found = f"unknown {what} {', '.join(map(repr, bad))}" if bad else f"no {what}"
            raise argparse.ArgumentTypeError(
                f"{found}; known: {', '.join(allowed)} (one or more, comma-separated)"
            )
        return values

    parse.__name__ = "choices"
    return parse


#: a comma list of dtypes of the command line
dtypes = choices(tuple(DTYPES), "dtype")


def device(
    kinds: tuple[str, ...] = KINDS, *, auto: bool = False, here: bool = True
) -> Callable[[str], str]:
    """A device usable here (`auto` too where allowed): a missing GPU is the flag's error.
    `here=False` checks the name only, for commands that may run elsewhere (`--executor
    slurm`) and look for the device themselves when they run here."""

    def parse(text: str) -> str:
        if auto and text == "auto":
            return text
        try:
            check_device(text, kinds, here=here)
        except SasaBenchError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return text

    parse.__name__ = "device"
    return parse


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def _writable_under(path: Path) -> None:
    """The folders `path` would need can be made: the nearest existing one is a writable
    folder."""
    base = _nearest_existing(path.parent if path.parent != path else path)
    if not base.is_dir():
        raise argparse.ArgumentTypeError(
            f"{str(base)!r} is a file, not a folder: choose another path"
        )
    if not os.access(base, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{str(base)!r} is not writable: choose another path")


def output_file(text: str) -> Path:
    """A file that results will be written or appended to: not a folder, in a place that can be
    written (checked when the flag is parsed, before any work)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; name a file in it")
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not writable")
    _writable_under(path)
    return path


def output_folder(text: str) -> Path:
    """A folder that results will be written into: a folder if it exists, else creatable."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; a folder is needed here")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{text!r} is not writable")
        return path
    _writable_under(path / "x")
    return path

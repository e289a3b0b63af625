"""Errors that carry a message meant for the user (the CLI prints it on one line, exit 2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class SasaBenchError(Exception):
    """Base class: bad input the user can fix."""


class SpecError(SasaBenchError, ValueError):
    """A model specification or override that does not describe a valid network."""


class UnknownNameError(SasaBenchError, KeyError):
    """A name looked up in a registry (model, backend, ...) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def look_up(registry: Mapping[str, T], name: str, what: str) -> T:
    """`registry[name]`, or an UnknownNameError naming `what` was asked and the known names."""
    try:
        return registry[name]
    except KeyError:
        raise UnknownNameError(f"unknown {what} {name!r}; known: {', '.join(registry)}") from None

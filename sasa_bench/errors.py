"""Errors that carry a message meant for the user (the CLI prints it on one line, exit 2)."""


class SasaBenchError(Exception):
    """Base class: bad input the user can fix."""


class SpecError(SasaBenchError, ValueError):
    """A model specification or override that does not describe a valid network."""


class UnknownNameError(SasaBenchError, KeyError):
    """A name looked up in a registry (model, backend, ...) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""

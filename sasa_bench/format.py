"""Numbers and tables as text: every formatter the commands and reports print with.

A missing value (None) is always printed as `MISSING`, so that an empty cell looks the same in
every table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

MISSING = "-"


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (SI prefixes)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {prefix}{unit}"
    return f"{value:.0f} {unit}".rstrip()


def cell(value: object) -> str:
    """A cell for a value that may be missing."""
    return MISSING if value is None else str(value)


def fixed(value: float | None, digits: int = 2) -> str:
    """A number with `digits` decimals, or MISSING."""
    return MISSING if value is None else f"{value:.{digits}f}"


def significant(value: float | None, digits: int = 4) -> str:
    """A number with `digits` significant digits, or MISSING."""
    return MISSING if value is None else f"{value:.{digits}g}"


def count(value: float | None) -> str:
    """An exact count with thousands separators: 25,557,032."""
    return MISSING if value is None else f"{int(value):,}"


def binary_bytes(value: float | None) -> str:
    """Bytes in binary units: 3263744 -> '3.11 MiB'."""
    if value is None:
        return MISSING
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= factor:
            return f"{value / factor:.2f} {unit}"
    return f"{value:.0f} B"


def shape(dims: Sequence[int]) -> str:
    """(64, 56, 56) -> '64x56x56'."""
    return "x".join(str(d) for d in dims)


def to_csv(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return out.getvalue()


def to_markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table (pipes escaped, newlines flattened)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"

"""The same benchmark measurements side by side, across files, devices, dtypes or kernels.

Columns are the values of one field (`by`: the file a record came from, or any config or env
field: device, dtype, attn_impl, gpu, ...). Rows are measurements: model, mode and batch, plus
every other config field that varies inside a column. A field constant inside each column
(say the device, when each file holds one machine) describes the column instead. Each column
after the baseline gets the ratio of its value to the baseline's. Where a measurement was made
more than once, the latest record counts.

Accuracy (`top1`, `top5`) compares training and evaluation records: a cell is the mean over the
seeds of one experiment, with its sample sd and n (the latest run of each seed counts), never
one run.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sasa_bench.errors import SasaBenchError
from sasa_bench.format import significant
from sasa_bench.measure.model import BenchConfig
from sasa_bench.records import Record, load_records, retried_batch

#: config fields that identify a measurement, in display order; the first three always do
IDENTITY = (
    "model",
    "mode",
    "batch_size",
    "resolution",
    "device",
    "dtype",
    "amp",
    "layout",
    "runtime",
    "translation",
    "attn_impl",
    "threads",
)
ALWAYS = IDENTITY[:3]
#: metrics of training/eval records, compared over seeds, and the fields that identify their rows
ACCURACY_METRICS = ("top1", "top5")
ACCURACY_IDENTITY = ("model", "data", "epochs", "recipe", "resolution", "amp", "attn_impl")
#: env fields a comparison can be made by
ENV_FIELDS = ("gpu", "gpu_uuid", "host", "cpu", "torch", "cuda", "driver", "git_sha")


@dataclass
class Comparison:
    by: str
    metric: str
    columns: list[str]  # values of `by`; the first is the baseline
    key_fields: list[str]  # what identifies a row
    column_fields: dict[str, dict[str, Any]]  # column -> fields constant inside it
    rows: list[dict[str, Any]] = field(default_factory=list)
    # each row: {"key": {field: value}, "values": {column: float|None},
    #            "ratios": {column: float|None}, "flags": {column: str},
    #            "spread": {column: [sd|None, n]} (accuracy: over seeds)}

    @property
    def baseline(self) -> str:
        return self.columns[0]

    def headers(self) -> list[str]:
        ratios = [f"{column} / {self.baseline}" for column in self.columns[1:]]
        return [*self.key_fields, *self.columns, *ratios]

    def table_rows(self, *, rounded: bool = True) -> list[list[Any]]:
        """Flat rows for CSV and Markdown (4 significant digits unless not `rounded`); a failed
        or retried cell carries its flag."""
        flat = []
        for row in self.rows:
            cells = [row["key"][name] for name in self.key_fields]
            for column in self.columns:
                value = row["values"].get(column)
                flag = row["flags"].get(column)
                text = "" if value is None else (f"{value:.4g}" if rounded else repr(value))
                if value is not None and column in row.get("spread", {}):
                    sd, n = row["spread"][column]
                    sd_text = "-" if sd is None else (f"{sd:.2g}" if rounded else repr(sd))
                    text += f" ± {sd_text} (n={n})"
                cells.append(f"{text} ({flag})".strip() if flag else text)
            cells += [_ratio_text(row["ratios"].get(column)) for column in self.columns[1:]]
            flat.append(cells)
        return flat

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "metric": self.metric,
            "baseline": self.baseline,
            "columns": self.columns,
            "key_fields": self.key_fields,
            "column_fields": self.column_fields,
            "rows": self.rows,
        }


def _ratio_text(ratio: float | None) -> str:
    return "" if ratio is None else significant(ratio, 3) + "x"


def load_labelled(
    paths: Sequence[str], kinds: Sequence[str] = ("bench",)
) -> list[tuple[str, Record]]:
    """(file label, record) for every record of `kinds`; a label is the file's name, or its
    path where two files share a name."""
    names = [Path(path).name for path in paths]
    labels = [
        name if names.count(name) == 1 else str(path)
        for name, path in zip(names, paths, strict=True)
    ]
    return [
        (label, record)
        for label, path in zip(labels, paths, strict=True)
        for record in load_records(path)
        if record.kind in kinds
    ]


def field_value(label: str, record: Record, name: str) -> Any:
    if name == "file":
        return label
    if name == "model":
        return record.model
    config = BenchConfig.upgraded(record.config) if record.kind == "bench" else record.config
    if name in config:
        return config[name]
    return record.env.get(name)


def compare(
    entries: Sequence[tuple[str, Record]],
    *,
    by: str = "file",
    metric: str = "images_per_s",
    baseline: str | None = None,
) -> Comparison:
    """Compare `metric` of the records across the values of `by`."""
    by = by.replace("-", "_")
    by = "runtime" if by == "compile" else by  # compile is one runtime of several
    accuracy = metric in ACCURACY_METRICS
    identity = ACCURACY_IDENTITY if accuracy else IDENTITY
    if by not in ("file", *identity, *ENV_FIELDS):
        known = ", ".join(("file", *identity, *ENV_FIELDS))
        raise SasaBenchError(f"cannot compare by {by!r}; known: {known}")
    if not entries:
        what = "training or eval" if accuracy else "bench"
        raise SasaBenchError(f"no {what} records in these files")
    if not any(metric in record.metrics for _, record in entries):
        raise SasaBenchError(f"no record has the metric {metric!r}")
    for _, record in entries:
        value = record.metrics.get(metric)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise SasaBenchError(
                f"--metric {metric}: {value!r} is not a number; compare a numeric metric "
                "(images_per_s, median_ms, peak_rss_bytes, top1, ...)"
            )
    column_of = [str(field_value(label, record, by)) for label, record in entries]
    columns = list(dict.fromkeys(column_of))
    if baseline is not None:
        if baseline not in columns:
            raise SasaBenchError(f"baseline {baseline!r} is not a column: {', '.join(columns)}")
        columns.remove(baseline)
        columns.insert(0, baseline)

    key_fields, column_fields = [], {column: {} for column in columns}
    for name in (n for n in identity if n != by):
        per_column: dict[str, set] = {column: set() for column in columns}
        for (label, record), column in zip(entries, column_of, strict=True):
            per_column[column].add(_hashable(field_value(label, record, name)))
        if name in ALWAYS or any(len(values) > 1 for values in per_column.values()):
            key_fields.append(name)
        else:
            for column, values in per_column.items():
                column_fields[column][name] = next(iter(values))

    # the latest record of each seed (one seed for a measurement)
    latest: dict[tuple, dict[str, dict[object, Record]]] = {}
    for (label, record), column in zip(entries, column_of, strict=True):
        key = tuple(_hashable(field_value(label, record, name)) for name in key_fields)
        runs = latest.setdefault(key, {}).setdefault(column, {})
        seed = record.config.get("seed") if accuracy else None
        if seed not in runs or record.created >= runs[seed].created:
            runs[seed] = record

    result = Comparison(by, metric, columns, key_fields, column_fields)
    for key, cells in latest.items():
        values, flags, spread = {}, {}, {}
        for column, runs in cells.items():
            ok = [
                r.metrics[metric] for r in runs.values() if r.status == "ok" and metric in r.metrics
            ]
            values[column] = statistics.fmean(ok) if ok else None
            if accuracy and ok:
                spread[column] = [statistics.stdev(ok) if len(ok) > 1 else None, len(ok)]
            flag = ", ".join(dict.fromkeys(f for f in map(_flag, runs.values()) if f))
            if flag:
                flags[column] = flag
        base = values.get(columns[0])
        ratios = {
            column: values[column] / base if base and values.get(column) is not None else None
            for column in columns[1:]
        }
        result.rows.append(
            {
                "key": dict(zip(key_fields, key, strict=True)),
                "values": values,
                "ratios": ratios,
                "flags": flags,
                **({"spread": spread} if accuracy else {}),
            }
        )
    return result


def _flag(record: Record) -> str | None:
    if record.status != "ok":
        return "failed"
    flags = []
    used = retried_batch(record)
    if used is not None:
        flags.append(f"OOM: batch {used}")
    if not record.metrics.get("reliable", True):
        flags.append("unreliable")
    return ", ".join(flags) or None


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value

"""What a report has recorded, and how an entry of a study finds its records.

The records file is the report's memory: what exists is reused, what is new is appended the
moment it exists, so an interrupted report, run again, measures only what is missing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from sasa_bench.measure.model import BenchConfig
from sasa_bench.models.registry import with_options
from sasa_bench.records import Record, append_record, load_records
from sasa_bench.report.study import Study
from sasa_bench.train.datasets import open_dataset
from sasa_bench.train.seeds import SeedSummary, summarize
from sasa_bench.train.setup import fit_to_data


class RecordStore:
    """The report's records file, and records given from elsewhere (`--results`)."""

    def __init__(self, path: Path, external: list[Record]) -> None:
        self.path = path
        self.records = load_records(path) if path.is_file() else []
        self.external = external

    def add(self, record: Record) -> Record:
        append_record(self.path, record)
        self.records.append(record)
        return record

    def find(self, kind: str, match: Callable[[Record], bool]) -> Record | None:
        """The latest ok record of `kind` that `match` accepts."""
        for record in reversed(self.external + self.records):
            if record.kind == kind and record.status == "ok" and match(record):
                return record
        return None

    def outcome(self, kind: str, match: Callable[[Record], bool]) -> Record | None:
        """`find`'s record, else the latest failed one (a table says why a cell is empty)."""
        found = self.find(kind, match)
        if found is None:
            for record in reversed(self.external + self.records):
                if record.kind == kind and match(record):
                    return record
        return found


def bench_config(
    study: Study, model: str, device: str, *, trained: bool = False, runtime: str | None = None
) -> BenchConfig:
    """The measurement of an entry: the study's bench plan applied to the entry's model, or
    (`trained`) to the configuration the study trains, so that its speed and its accuracy come
    from one model; in `runtime` (default: the plan's first)."""
    plan = study.bench
    name = with_options(model, plan.overrides).name
    if trained:
        name = trained_model(model, study.train.overrides, study.train.data)
    return BenchConfig(
        name, device=device, dtype=plan.dtype, channels_last=plan.channels_last,
        batch_size=plan.batch_size, warmup=plan.warmup, iters=plan.iters,
        max_time_s=plan.max_time_s, runtime=runtime or plan.runtimes[0],
    )  # fmt: skip


def trains(study: Study, model: str) -> bool:
    """Whether the study trains this entry."""
    return bool(study.train and model in study.train.models)


@functools.cache
def trained_model(model: str, overrides: str, data: str) -> str:
    """The canonical name a training run on `data` gives the entry (input size, classes);
    cached: every lookup of an entry's records asks, and the answer opens the dataset."""
    return fit_to_data(with_options(model, overrides), open_dataset(data), ()).name


def trained_record(store: RecordStore, study: Study, model: str, seed: int) -> Record | None:
    """The study's own training run of this entry with this seed."""
    plan = study.train
    name = trained_model(model, plan.overrides, plan.data)

    def match(record: Record) -> bool:
        config = record.config
        return (
            record.model == name and "top1" in record.metrics and config.get("seed") == seed
            and config.get("data") == plan.data and config.get("epochs") == plan.epochs
            and config.get("recipe") == plan.recipe
        )  # fmt: skip

    return store.find("train", match)


def accuracy_summary(store: RecordStore, study: Study, model: str) -> SeedSummary | None:
    """The entry's accuracy over seeds: the study's own runs (each of its seeds), or else
    training/eval records given with --results for the model itself (e.g. ImageNet runs of
    `sasa50`), the experiment with the most seeds."""
    if trains(study, model):
        runs = [trained_record(store, study, model, seed) for seed in study.train.seeds]
        found = summarize([r for r in runs if r is not None])
        return found[0] if found else None
    name = with_options(model, "").name
    for kind in ("train", "eval"):
        records = [r for r in store.external + store.records if r.model == name]
        found = summarize(records, kinds=(kind,))
        if found:
            return max(found, key=lambda summary: summary.n)
    return None

"""The paper's reported numbers (every table of the reference), keyed to the model that builds them.

Each row's `model` is a model name in the grammar of `sasa_bench.models.registry`; rows of Table 2
(RetinaNet detectors) name their backbone. Values are the paper's, never ours: anything printed
from here is labelled as the paper's.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from sasa_bench.models.registry import parse_model


@dataclass(frozen=True)
class PaperRow:
    table: str
    label: str
    model: str
    flops_b: float | None
    params_m: float | None
    top1: float | None
    accuracy_split: str | None
    extra: dict[str, object]

    @functools.cached_property
    def canonical_model(self) -> str:
        return parse_model(self.model).name


@functools.cache
def load() -> dict[str, object]:
    return json.loads(resources.files("sasa_bench").joinpath("data/paper.json").read_text())


@functools.cache
def _all_rows() -> tuple[PaperRow, ...]:
    fields = set(PaperRow.__dataclass_fields__) - {"extra"}
    return tuple(
        PaperRow(
            **{k: v for k, v in raw.items() if k in fields},
            extra={k: v for k, v in raw.items() if k not in fields},
        )
        for raw in load()["rows"]
    )


def rows(table: str | None = None) -> list[PaperRow]:
    """Every row of the paper, or of one table ("1", "3", ...)."""
    return [r for r in _all_rows() if table is None or r.table == table]


def rows_for(model_name: str) -> list[PaperRow]:
    """Classification rows (not the detectors of Table 2) whose model is `model_name`."""
    name = parse_model(model_name).name
    return [r for r in rows() if r.table != "2" and r.canonical_model == name]


def row_for(model_name: str, table: str) -> PaperRow | None:
    """The row of paper table `table` whose model is `model_name`, if the paper has one."""
    return next((r for r in rows_for(model_name) if r.table == table), None)

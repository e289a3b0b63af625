"""The paper's reported numbers (every table of the reference), keyed to the model that builds them.

Each row's `model` is a model name in the grammar of `sasa_bench.models.registry`; rows of Table 2
(RetinaNet detectors) name their backbone. Values are the paper's, never ours: anything printed
from here is labelled as the paper's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
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

    @property
    def canonical_model(self) -> str:
        return parse_model(self.model).name


@cache
def load() -> dict[str, object]:
    return json.loads(resources.files("sasa_bench").joinpath("data/paper.json").read_text())


def rows(table: str | None = None) -> list[PaperRow]:
    fields = set(PaperRow.__dataclass_fields__) - {"extra"}
    out = []
    for raw in load()["rows"]:
        if table is None or raw["table"] == table:
            known = {k: v for k, v in raw.items() if k in fields}
            out.append(PaperRow(**known, extra={k: v for k, v in raw.items() if k not in fields}))
    return out


def rows_for(model_name: str) -> list[PaperRow]:
    """Classification rows (not the detectors of Table 2) whose model is `model_name`."""
    name = parse_model(model_name).name
    return [r for r in rows() if r.table != "2" and r.canonical_model == name]

"""Every traced counter's count of one model, as a record a report keeps (counting a large
model four times takes seconds to minutes, so it is done once and stored like a measurement).

A `counts` record holds, per counter of `sasa_bench.counters.COUNTERS`, the MACs per image at
the model's resolution with sasa_bench's handlers (`metrics["macs"][counter]`, None where the
counter could not run, with its note), and the model's cost as every record does (analytic for
sasa_bench's models, traced for third-party ones).
"""

from __future__ import annotations

import torch

from sasa_bench.counters import COUNTERS, cost_totals, run_counter
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import IN_CHANNELS, build_model
from sasa_bench.records import Record, environment

#: how every counts record is counted: with sasa_bench's handlers, one image
COUNTED = {"handlers": True, "batch": 1}


def counts_config(model: str) -> dict[str, object]:
    """What a counts record is found by."""
    return {"model": parse_model(model).name, **COUNTED}


def counts_record(model: str) -> Record:
    """Count `model` (one image) with every traced counter; a model that cannot be built or
    costed is a failed record."""
    config = {"model": model, **COUNTED}  # the name as given, where it does not parse
    try:
        config = counts_config(model)
        named = parse_model(model)
        torch.manual_seed(0)
        net = build_model(named.spec).eval()
        x = torch.randn(1, IN_CHANNELS, named.spec.resolution, named.spec.resolution)
        results = {name: run_counter(name, net, x) for name in COUNTERS}
        cost = cost_totals(named.spec)
    except Exception as error:  # a model that fails to build is a row that says why
        return Record("counts", config["model"], status="failed", config=config,
                      error=f"{type(error).__name__}: {error}", env=environment("cpu"))  # fmt: skip
    metrics = {
        "resolution": named.spec.resolution,
        "macs": {name: result.macs for name, result in results.items()},
        "notes": {name: result.note for name, result in results.items() if result.note},
    }
    return Record("counts", named.name, config=config, metrics=metrics, cost=cost,
                  env=environment("cpu"))  # fmt: skip


def spread(record: Record) -> float | None:
    """(largest - smallest) / smallest over the counters that ran; None if fewer than two."""
    counted = [macs for macs in record.metrics.get("macs", {}).values() if macs]
    if len(counted) < 2:
        return None
    return (max(counted) - min(counted)) / min(counted)

"""Baseline against new values: one `Finding` per thing compared.

- Costs (params, MACs, FLOPs of a model and of each of its layers) are exact: any difference is
  a regression, a smaller count too (a cost must change on purpose, with --update-baseline).
- A speed ratio is a regression only when both hold: its median grew by more than the
  tolerance, and the one-sided Mann-Whitney U test of the new ratio samples against the
  baseline's gives p < alpha. The threshold keeps small real changes from failing; the test
  keeps noise from failing (a median 30 % up out of five wild samples is not evidence).
  Symmetrically, a significant drop beyond the tolerance is reported as `improved`.
- Peak memory is deterministic on one software stack: a regression above the memory tolerance.
  It is compared only when the baseline was measured the same way on the same GPU and torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sasa_bench.regression.baseline import Measured, SpeedCheck
from sasa_bench.regression.significance import mann_whitney_greater

COST_METRICS = ("params", "macs", "flops")
#: environment fields that must agree for absolute numbers (memory) to be compared
SAME_STACK = ("device", "gpu", "torch", "cuda")
#: fields that only earn a warning (ratios may move on other hardware)
SAME_MACHINE = ("cpu",)
STATUSES = ("ok", "regression", "improved", "skipped", "error")


@dataclass
class Finding:
    kind: str  # "cost" | "speed" | "memory"
    name: str  # what was compared: "sasa50 params", "sasa50 stages.0.0.mixer macs", a check
    status: str  # one of STATUSES
    old: float | None = None
    new: float | None = None
    change: float | None = None  # new / old
    p_value: float | None = None  # speed: one-sided U test, new ratios larger than old
    limit: str | None = None  # the bound that was applied
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cost_findings(model: str, old: dict[str, Any], new: dict[str, Any]) -> list[Finding]:
    """Exact comparison of totals and of every layer (added and removed layers included)."""
    if not old:
        return [Finding("cost", model, "error", note="no baseline values: run --update-baseline")]
    rows = [
        _exact(f"{model} {metric}", old.get(metric), new[metric])
        for metric in COST_METRICS
        if old.get(metric) != new[metric]
    ]
    old_layers, new_layers = old.get("layers") or {}, new["layers"]
    for layer in [*new_layers, *(name for name in old_layers if name not in new_layers)]:
        before, after = old_layers.get(layer), new_layers.get(layer)
        if before is None or after is None:
            state = "is new" if before is None else "was removed"
            rows.append(Finding("cost", f"{model} {layer}", "regression", note=f"layer {state}"))
            continue
        rows += [
            _exact(f"{model} {layer} {metric}", b, a)
            for metric, b, a in zip(COST_METRICS, before, after, strict=True)
            if b != a
        ]
    if rows:
        return rows
    layers = f" and {len(new_layers)} layers" if old_layers else ""
    return [Finding("cost", model, "ok", limit="exact", note=f"params, MACs, FLOPs{layers} equal")]


def _exact(name: str, old: int | None, new: int) -> Finding:
    change = new / old if old else None
    return Finding("cost", name, "regression", old, new, change, limit="exact")


def speed_finding(check: SpeedCheck, new: Measured, *, tolerance: float, alpha: float) -> Finding:
    """The check's ratio against its baseline: regression, improved or ok (see the module)."""
    old = check.baseline
    assert old is not None
    change = new.ratio / old.ratio
    slower = mann_whitney_greater(new.ratio_samples, old.ratio_samples).p_value
    faster = mann_whitney_greater(old.ratio_samples, new.ratio_samples).p_value
    finding = Finding(
        "speed",
        check.name,
        "ok",
        old.ratio,
        new.ratio,
        change,
        slower,
        limit=f"x{1 + tolerance:.2f}, p<{alpha:g}",
        note=f"{check.a} / {check.b}",
    )
    if change > 1 + tolerance:
        if slower < alpha:
            finding.status = "regression"
        else:
            finding.note += f"; above the tolerance but not significant (p={slower:.2g})"
    elif change < 1 / (1 + tolerance) and faster < alpha:
        finding.status = "improved"
        finding.p_value = faster
        finding.note += "; faster: --update-baseline to keep it"
    return finding


def memory_findings(
    check: SpeedCheck, new: Measured, *, tolerance: float, comparable: bool
) -> list[Finding]:
    """Peak memory of each side of a check, within the memory tolerance."""
    old = check.baseline
    assert old is not None
    rows = []
    for side, subject in (("a", check.a), ("b", check.b)):
        before, after = old.memory_bytes.get(side), new.memory_bytes.get(side)
        finding = Finding(
            "memory", f"{check.name} {subject}", "ok", before, after, limit=f"x{1 + tolerance:.2f}"
        )
        if not comparable:
            finding.status, finding.note = "skipped", "baseline from another GPU or torch"
        elif old.memory_source != new.memory_source:
            finding.status = "skipped"
            finding.note = f"measured as {new.memory_source}, baseline as {old.memory_source}"
        elif before is None or after is None:
            finding.status, finding.note = "skipped", "no peak measured"
        else:
            finding.change = after / before if before else (1.0 if after == 0 else float("inf"))
            if finding.change > 1 + tolerance:
                finding.status = "regression"
            elif finding.change < 1 / (1 + tolerance):
                finding.status, finding.note = "improved", "--update-baseline to keep it"
        rows.append(finding)
    return rows


def environment_differences(
    old: dict[str, Any] | None, new: dict[str, Any]
) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """({field: (old, new)} of SAME_STACK fields that differ, same of SAME_MACHINE fields)."""
    if not old:
        return {}, {}

    def differing(names: tuple[str, ...]) -> dict[str, tuple]:
        return {
            name: (old.get(name), new.get(name))
            for name in names
            if _norm(name, old.get(name)) != _norm(name, new.get(name))
        }

    return differing(SAME_STACK), differing(SAME_MACHINE)


def _norm(name: str, value: Any) -> Any:
    """cuda:1 and cuda:0 are the same stack; the GPU's name tells them apart."""
    if name == "device" and isinstance(value, str):
        return value.partition(":")[0]
    return value

"""`run_check`: measure what a baseline lists, compare, and give the report and the new values.

Exit codes of the report (and of `sasa-bench check`): 0 every comparison within its bounds,
1 at least one regression (each a `Finding` with old, new, change and p-value), 2 the check
could not run completely (a measurement failed, or a check has no baseline values yet) and
nothing regressed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sasa_bench.devices import check_device
from sasa_bench.errors import SasaBenchError
from sasa_bench.measure.model import bench_environment
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.records import Record
from sasa_bench.regression.baseline import Baseline
from sasa_bench.regression.compare import (
    Finding,
    cost_findings,
    environment_differences,
    memory_findings,
    speed_finding,
)
from sasa_bench.regression.measure import measure_check, measured_from_records


@dataclass
class CheckReport:
    findings: list[Finding]
    warnings: list[str] = field(default_factory=list)
    baseline_env: dict[str, Any] | None = None
    env: dict[str, Any] = field(default_factory=dict)
    baseline_created: str | None = None

    def with_status(self, status: str) -> list[Finding]:
        return [f for f in self.findings if f.status == status]

    @property
    def exit_code(self) -> int:
        if self.with_status("regression"):
            return 1
        return 2 if self.with_status("error") else 0

    def to_dict(self) -> dict[str, Any]:
        counts = {
            s: len(self.with_status(s)) for s in dict.fromkeys(f.status for f in self.findings)
        }
        return {
            "exit_code": self.exit_code,
            "counts": counts,
            "warnings": self.warnings,
            "baseline_created": self.baseline_created,
            "baseline_env": self.baseline_env,
            "env": self.env,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class CheckRun:
    report: CheckReport
    updated: Baseline | None  # the baseline with this run's values; None if one did not run


def cost_entry(model: str) -> dict[str, Any]:
    """The analytic cost of `model` as stored in a baseline (layers: [params, macs, flops])."""
    cost = model_cost(parse_model(model).spec)
    return {**cost.totals(), "layers": cost.by_layer()}


def run_check(
    baseline: Baseline,
    *,
    tolerance: float | None = None,
    records: Sequence[Record] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> CheckRun:
    """Measure every check of `baseline` (or read the model pairs from `records`) and compare.

    `tolerance` replaces the speed tolerance of the file and of every check."""
    settings = baseline.settings
    if baseline.speed and records is None:
        check_device(settings.device)  # one line for a missing GPU, not an error row per check
    env = bench_environment(settings.device)
    env["torch_threads"] = settings.threads or torch.get_num_threads()
    stack, machine = environment_differences(baseline.env, env)
    report = CheckReport(
        [], _warnings(stack, machine), baseline.env, env, baseline_created=baseline.created
    )
    complete = True
    costs = {}
    for model, old in baseline.costs.items():
        progress(f"costs of {model}")
        try:
            costs[model] = cost_entry(model)
        except SasaBenchError as error:
            report.findings.append(Finding("cost", model, "error", note=str(error)))
            complete = False
            continue
        report.findings += cost_findings(model, old, costs[model])
    checks = []
    for check in baseline.speed:
        progress(f"timing {check.name}: {check.a} / {check.b}")
        try:
            if records is not None:
                measured = measured_from_records(check, settings, records)
            else:
                measured = measure_check(check, settings)
        except Exception as error:  # a check that cannot run is a row; the others go on
            note = str(error) if isinstance(error, SasaBenchError) else repr(error)
            report.findings.append(Finding("speed", check.name, "error", note=note[:300]))
            complete = False
            continue
        checks.append(dataclasses.replace(check, baseline=measured))
        if check.baseline is None:
            note = "no baseline values: run --update-baseline"
            report.findings.append(Finding("speed", check.name, "error", note=note))
            continue
        limit = check.tolerance if tolerance is None else tolerance
        limit = settings.tolerance if limit is None else limit
        report.findings.append(
            speed_finding(check, measured, tolerance=limit, alpha=settings.alpha)
        )
        report.findings += memory_findings(
            check, measured, tolerance=settings.memory_tolerance, comparable=not stack
        )
    updated = dataclasses.replace(baseline, costs=costs, speed=checks).stamped(env)
    return CheckRun(report, updated if complete else None)


def _warnings(stack: dict[str, tuple], machine: dict[str, tuple]) -> list[str]:
    warnings = []
    if stack:
        what = ", ".join(f"{name} {old!r} (here {new!r})" for name, (old, new) in stack.items())
        warnings.append(f"baseline made with {what}: compared on ratios only, memory not compared")
    if machine:
        what = ", ".join(f"{name} {old!r} (here {new!r})" for name, (old, new) in machine.items())
        warnings.append(
            f"baseline made on another machine ({what}): speed ratios may differ on other "
            "hardware; keep one baseline per runner type"
        )
    return warnings

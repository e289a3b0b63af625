"""The report of `sasa-bench check` as rows of text cells and as a Markdown summary (for a CI
system's job page, e.g. GitHub's `$GITHUB_STEP_SUMMARY`)."""

from __future__ import annotations

from sasa_bench.format import binary_bytes, count, significant, to_markdown
from sasa_bench.regression.check import CheckReport
from sasa_bench.regression.compare import Finding

HEADERS = ("status", "kind", "what", "old", "new", "change", "p", "limit", "note")
#: the order rows are listed in: what needs attention first
ORDER = {"regression": 0, "error": 1, "improved": 2, "skipped": 3, "ok": 4}


def finding_cells(finding: Finding) -> list[str]:
    value = {"cost": count, "speed": significant, "memory": binary_bytes}[finding.kind]
    return [
        finding.status.upper() if finding.status == "regression" else finding.status,
        finding.kind,
        finding.name,
        value(finding.old),
        value(finding.new),
        "-" if finding.change is None else f"x{finding.change:.3f}",
        "-" if finding.p_value is None else f"{finding.p_value:.2g}",
        finding.limit or "-",
        finding.note or "",
    ]


def sorted_findings(report: CheckReport) -> list[Finding]:
    return sorted(report.findings, key=lambda f: ORDER.get(f.status, 5))


def summary_line(report: CheckReport) -> str:
    counts = {}
    for finding in report.findings:
        counts[finding.status] = counts.get(finding.status, 0) + 1
    parts = [f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: ORDER.get(s, 5))]
    verdict = {0: "passed", 1: "REGRESSION", 2: "could not run completely"}[report.exit_code]
    return f"{verdict}: " + (", ".join(parts) or "nothing to compare")


def environment_line(env: dict | None) -> str:
    if not env:
        return "-"
    keys = ("host", "device", "gpu", "cpu", "torch", "cuda", "torch_threads", "git_sha")
    return ", ".join(f"{key} {env[key]}" for key in keys if env.get(key) is not None)


def to_markdown_summary(report: CheckReport, baseline_path: str) -> str:
    icon = {0: ":white_check_mark:", 1: ":x:", 2: ":warning:"}[report.exit_code]
    lines = [
        f"## {icon} sasa-bench check: {summary_line(report)}",
        "",
        f"- baseline: `{baseline_path}`, made {report.baseline_created or '-'} on "
        f"{environment_line(report.baseline_env)}",
        f"- this run: {environment_line(report.env)}",
        *(f"- **warning**: {warning}" for warning in report.warnings),
        "",
    ]
    rows = [finding_cells(f) for f in sorted_findings(report)]
    attention = [
        row for row, f in zip(rows, sorted_findings(report), strict=True) if f.status != "ok"
    ]
    if attention:
        lines += [to_markdown(HEADERS, attention)]
    lines += [
        "<details><summary>every comparison</summary>",
        "",
        to_markdown(HEADERS, rows),
        "</details>",
        "",
    ]
    return "\n".join(lines)

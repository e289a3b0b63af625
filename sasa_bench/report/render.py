"""Records -> report.md, index.html, figures (PNG + SVG), tables (CSV), records.csv."""

from __future__ import annotations

import datetime as _dt
import io
from pathlib import Path

import matplotlib.pyplot as plt

from sasa_bench import paper
from sasa_bench.analysis.complexity import model_cost
from sasa_bench.cli.common import human
from sasa_bench.models.registry import parse_model
from sasa_bench.report.build import RecordStore, accuracy_record, bench_config
from sasa_bench.report.document import (
    Block,
    Figure,
    Heading,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)
from sasa_bench.report.plots import Point, family_of, tradeoff
from sasa_bench.report.study import Study
from sasa_bench.report.tables import to_csv
from sasa_bench.results import environment, to_dataframe

ROW_HEADERS = (
    "model", "FLOPs B (paper)", "FLOPs B (ours)", "params M (paper)", "params M (ours)",
    "top-1 % (paper)", "top-1 % (measured)", "images/s", "latency ms", "peak memory", "J/image",
)  # fmt: skip


def _paper_row(study: Study, model: str):
    if not study.paper_table:
        return None
    name = parse_model(model).name
    return next((r for r in paper.rows(study.paper_table) if r.canonical_model == name), None)


def entry_rows(study: Study, store: RecordStore, device: str) -> list[dict]:
    """One dict per entry: the paper's numbers, our analytic cost, what was measured."""
    entries = []
    for model in study.models:
        cost = model_cost(parse_model(model).spec)
        reported = _paper_row(study, model)
        bench = None
        if study.bench:
            wanted = bench_config(study, model, device).to_dict()
            bench = store.find("bench", lambda r, w=wanted: r.config == w)
        accuracy = accuracy_record(store, study, model)
        metrics = bench.metrics if bench else {}
        entries.append({
            "model": model, "paper": reported, "cost": cost, "bench": bench,
            "accuracy": accuracy, "images_per_s": metrics.get("images_per_s"),
            "latency_ms": metrics.get("latency_ms"),
            "peak_memory": metrics.get("peak_allocated_bytes") or metrics.get("peak_rss_bytes"),
            "joules_per_image": metrics.get("joules_per_image"),
        })  # fmt: skip
    return entries


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def comparison_table(study: Study, entries: list[dict]) -> Table:
    rows = []
    for e in entries:
        p, acc = e["paper"], e["accuracy"]
        measured = "-"
        if acc:
            data = acc.config.get("data", "?")
            measured = f"{acc.metrics['top1']:.1f} ({data}, {acc.model})"
        paper_top1 = "-"
        if p and p.top1 is not None:
            paper_top1 = f"{p.top1}" + (" (held-out)" if p.accuracy_split == "held-out" else "")
        rows.append([
            e["model"], _fmt(p.flops_b if p else None, 1), f"{e['cost'].flops / 1e9:.2f}",
            _fmt(p.params_m if p else None, 1), f"{e['cost'].params / 1e6:.2f}", paper_top1,
            measured, _fmt(e["images_per_s"], 1), _fmt(e["latency_ms"], 1),
            human(e["peak_memory"], "B") if e["peak_memory"] else "-",
            _fmt(e["joules_per_image"], 3),
        ])  # fmt: skip
    bench = study.bench
    where = (
        f"batch {bench.batch_size}, {bench.dtype}"
        + (f", {bench.overrides}" if bench.overrides else ", 224x224")
        if bench
        else ""
    )
    caption = (
        f"paper = reported by Ramachandran et al. 2019; ours = analytic at 224x224 "
        f"(FLOPs = 2 x MACs); measured here: {where}; peak memory = the allocator's peak on "
        "a GPU, the process's peak RSS on a CPU"
    )
    return Table(ROW_HEADERS, rows, caption)


def _top1(e: dict) -> tuple[float, str] | None:
    if e["accuracy"]:
        return e["accuracy"].metrics["top1"], "measured"
    if e["paper"] and e["paper"].top1 is not None:
        return e["paper"].top1, "paper"
    return None


def study_figures(study: Study, entries: list[dict], device: str) -> list[tuple[str, str, object]]:
    """(name, caption, matplotlib Figure) for every trade-off that has data."""
    out = []
    cost_panels = []
    for label, key, scale in (
        ("FLOPs (billions, per image)", "flops", 1e9),
        ("parameters (millions)", "params", 1e6),
    ):
        points = []
        for e in entries:
            fam = family_of(e["model"])
            p = e["paper"]
            if (
                p
                and p.top1 is not None
                and getattr(p, f"{key}_b" if key == "flops" else "params_m")
            ):
                value = p.flops_b if key == "flops" else p.params_m
                points.append(Point(value, p.top1, e["model"], fam, "paper"))
            acc = e["accuracy"]
            if acc:
                trained = model_cost(parse_model(acc.model).spec)
                points.append(
                    Point(
                        getattr(trained, key) / scale,
                        acc.metrics["top1"],
                        f"{e['model']} [{acc.config.get('data', '?')}]",
                        fam,
                        "measured",
                    )
                )
        if points:
            cost_panels.append((label, f"top-1 against {key}", points))
    if cost_panels:
        figure = tradeoff(
            cost_panels,
            title=f"{study.title}: cost against accuracy",
            y_label="top-1 accuracy (%)",
            log_x=True,
        )
        out.append(
            (
                f"{study.name}-cost",
                "Cost against top-1: paper-reported (ImageNet) and "
                "measured here (cost of the model trained, on its dataset)",
                figure,
            )
        )
    bench = study.bench
    where = ""
    if bench:
        size = bench.overrides.replace("resolution=", "") if bench.overrides else "224"
        where = f"; {device}, {size}x{size}, batch {bench.batch_size}, {bench.dtype}"
    for key, label, name in (
        ("images_per_s", f"throughput (images/s{where})", "throughput"),
        ("peak_memory", f"peak memory (MiB{where})", "memory"),
        ("joules_per_image", f"energy (J/image{where})", "energy"),
    ):
        points = []
        for e in entries:
            top1 = _top1(e)
            if e[key] is None or top1 is None:
                continue
            x = e[key] / 2**20 if key == "peak_memory" else e[key]
            points.append(Point(x, top1[0], e["model"], family_of(e["model"]), top1[1]))
        if points:
            figure = tradeoff(
                [(label, f"measured {name} against top-1", points)],
                title=f"{study.title}: {name}",
                y_label="top-1 accuracy (%)",
                sources={"paper": "top-1 from the paper", "measured": "top-1 measured here"},
            )
            out.append(
                (
                    f"{study.name}-{name}",
                    f"Measured {name} against top-1; the top-1 is "
                    "measured where a training record exists, else the paper's",
                    figure,
                )
            )
    return out


def layer_table(study: Study, model: str, store: RecordStore, device: str) -> Table:
    cost = model_cost(parse_model(model).spec)
    config = bench_config(study, model, device) if study.bench else None
    timed = store.find("layers", lambda r: config and r.config == config.to_dict())
    times = timed.metrics["layers"] if timed else {}
    rows = []
    for row in cost.grouped("block"):
        prefix = row["name"]
        ms = sum(t for n, t in times.items() if n == prefix or n.startswith(prefix + "."))
        rows.append(
            [
                prefix,
                human(row["params"]),
                human(row["flops"]),
                human(row["activations"]),
                f"{100 * row['flops_share']:.1f}%",
                f"{ms:.3f}" if times else "-",
            ]
        )
    where = f" (latency: {config.model}, batch 1, {device})" if times else ""
    return Table(
        ("block", "params", "FLOPs", "activations", "FLOPs share", "latency ms"),
        rows,
        f"{model}: per block, analytic at 224x224{where}",
    )


def kernel_table(store: RecordStore, device: str) -> Table | None:
    record = store.find("kernels", lambda r: r.config.get("device") == device)
    if not record:
        return None
    headers = ("backend", "shape", "dtype", "fwd ms", "fwd+bwd ms", "x floor", "x conv", "note")
    rows = [
        [
            r["backend"],
            r["shape"],
            r["dtype"],
            _fmt(r["forward_ms"], 3),
            _fmt(r["forward_backward_ms"], 3),
            _fmt(r["floor_ratio"], 1),
            _fmt(r["conv_ratio"], 1),
            r["note"] or "",
        ]
        for r in record.metrics["rows"]
    ]
    caption = (
        f"{device}, batch {record.metrics['rows'][0]['batch']}, k 7, 8 heads; memory floor "
        f"at {record.config['copy_gb_per_s']:.0f} GB/s (copy measured in the same run)"
    )
    return Table(headers, rows, caption)


def _save(figure, folder: Path, name: str) -> bytes:
    (folder / "figures").mkdir(exist_ok=True)
    figure.savefig(folder / "figures" / f"{name}.svg")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    png = buffer.getvalue()
    (folder / "figures" / f"{name}.png").write_bytes(png)
    return png


def render_report(
    folder: Path, studies: list[Study], store: RecordStore, *, device: str, smoke: bool
) -> None:
    env = environment(device)
    title = f"sasa_bench report: {', '.join(s.name for s in studies)}"
    blocks: list[Block] = [
        Heading(1, title),
        Paragraph(
            f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC from "
            f"{len(store.records) + len(store.external)} records on {device}"
            f"{' (smoke: CPU-sized)' if smoke else ''}. Paper numbers are labelled as "
            "the paper's; every other number was computed or measured by sasa_bench."
        ),
    ]
    (folder / "tables").mkdir(exist_ok=True)
    for study in studies:
        blocks.append(Heading(2, study.title))
        blocks += [Paragraph(note) for note in study.notes]
        if study.models:
            entries = entry_rows(study, store, device)
            table = comparison_table(study, entries)
            blocks.append(table)
            (folder / "tables" / f"{study.name}.csv").write_text(to_csv(table.headers, table.rows))
            for name, caption, figure in study_figures(study, entries, device):
                blocks.append(Figure(name, caption, _save(figure, folder, name)))
            if study.layer_tables:
                blocks.append(Heading(3, "Per-block tables"))
                blocks += [layer_table(study, m, store, device) for m in study.models]
        if study.kernels:
            table = kernel_table(store, device)
            blocks.append(table or Paragraph("No kernel measurement on this device."))
    failed = [r for r in store.records if r.status != "ok"]
    if failed:
        blocks.append(Heading(2, "Failed measurements"))
        blocks.append(
            Table(
                ("kind", "model", "error"),
                [[r.kind, r.model, (r.error or "")[:200]] for r in failed],
            )
        )
    blocks.append(Heading(2, "Environment"))
    blocks.append(Table(("field", "value"), [[k, v] for k, v in sorted(env.items())]))
    blocks.append(
        Paragraph(
            "Raw records: records.jsonl and records.csv beside this report; "
            "tables as CSV under tables/, figures as PNG and SVG under figures/."
        )
    )
    (folder / "report.md").write_text(render_markdown(blocks))
    (folder / "index.html").write_text(render_html(blocks, title))
    records = store.external + store.records
    if records:
        to_dataframe(records).to_csv(folder / "records.csv", index=False)

"""Records -> report.md, index.html, figures (PNG + SVG), tables (CSV), records.csv."""

from __future__ import annotations

import datetime as _dt
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from sasa_bench import paper
from sasa_bench.format import fixed, human, to_csv
from sasa_bench.layers.cost import ModelCost
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.records import Record, environment, to_dataframe
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
from sasa_bench.report.store import RecordStore, accuracy_record, bench_config
from sasa_bench.report.study import Study

ROW_HEADERS = (
    "model", "FLOPs B (paper)", "FLOPs B (ours)", "params M (paper)", "params M (ours)",
    "top-1 % (paper)", "top-1 % (measured)", "images/s", "latency ms", "peak memory", "J/image",
)  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One model of a study: the paper's row, our analytic cost, and the records measured."""

    model: str
    paper: paper.PaperRow | None
    cost: ModelCost
    bench: Record | None
    accuracy: Record | None

    def metric(self, name: str) -> float | None:
        return self.bench.metrics.get(name) if self.bench else None

    @property
    def peak_memory(self) -> int | None:
        """The allocator's peak on a GPU, the process's peak RSS on a CPU."""
        return self.metric("peak_allocated_bytes") or self.metric("peak_rss_bytes")

    def top1(self) -> tuple[float, str] | None:
        """(top-1, "measured" or "paper"): measured where a training record exists."""
        if self.accuracy:
            return self.accuracy.metrics["top1"], "measured"
        if self.paper and self.paper.top1 is not None:
            return self.paper.top1, "paper"
        return None


def entries_of(study: Study, store: RecordStore, device: str) -> list[Entry]:
    entries = []
    for model in study.models:
        bench = None
        if study.bench:
            wanted = bench_config(study, model, device).to_dict()
            bench = store.find("bench", lambda r, w=wanted: r.config == w)
        entries.append(
            Entry(
                model,
                paper.row_for(model, study.paper_table) if study.paper_table else None,
                model_cost(parse_model(model).spec),
                bench,
                accuracy_record(store, study, model),
            )
        )
    return entries


def comparison_table(study: Study, entries: list[Entry]) -> Table:
    rows = []
    for e in entries:
        p, acc = e.paper, e.accuracy
        measured = "-"
        if acc:
            data = acc.config.get("data", "?")
            measured = f"{acc.metrics['top1']:.1f} ({data}, {acc.model})"
        paper_top1 = "-"
        if p and p.top1 is not None:
            paper_top1 = f"{p.top1}" + (" (held-out)" if p.accuracy_split == "held-out" else "")
        rows.append([
            e.model, fixed(p.flops_b if p else None, 1), f"{e.cost.flops / 1e9:.2f}",
            fixed(p.params_m if p else None, 1), f"{e.cost.params / 1e6:.2f}", paper_top1,
            measured, fixed(e.metric("images_per_s"), 1), fixed(e.metric("latency_ms"), 1),
            human(e.peak_memory, "B") if e.peak_memory else "-",
            fixed(e.metric("joules_per_image"), 3),
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


@dataclass(frozen=True)
class StudyFigure:
    name: str  # file stem under figures/
    caption: str
    figure: object  # a matplotlib Figure


def cost_points(entries: list[Entry], key: str) -> list[Point]:
    """Top-1 against `key` ("flops", billions, or "params", millions): the paper's points,
    and ours at the cost of the model actually trained."""
    scale = 1e9 if key == "flops" else 1e6
    points = []
    for e in entries:
        family, p = family_of(e.model), e.paper
        reported = (p.flops_b if key == "flops" else p.params_m) if p else None
        if p and p.top1 is not None and reported:
            points.append(Point(reported, p.top1, e.model, family, "paper"))
        if e.accuracy:
            trained = model_cost(parse_model(e.accuracy.model).spec)
            label = f"{e.model} [{e.accuracy.config.get('data', '?')}]"
            top1 = e.accuracy.metrics["top1"]
            points.append(Point(getattr(trained, key) / scale, top1, label, family, "measured"))
    return points


def cost_figure(study: Study, entries: list[Entry]) -> StudyFigure | None:
    panels = []
    axes = (("FLOPs (billions, per image)", "flops"), ("parameters (millions)", "params"))
    for label, key in axes:
        points = cost_points(entries, key)
        if points:
            panels.append((label, f"top-1 against {key}", points))
    if not panels:
        return None
    figure = tradeoff(
        panels, title=f"{study.title}: cost against accuracy", y_label="top-1 accuracy (%)",
        log_x=True,
    )  # fmt: skip
    caption = (
        "Cost against top-1: paper-reported (ImageNet) and measured here (cost of the model "
        "trained, on its dataset)"
    )
    return StudyFigure(f"{study.name}-cost", caption, figure)


#: measured quantities plotted against top-1: (figure name, quantity, unit, value of an entry)
MEASURED = (
    ("throughput", "throughput", "images/s", lambda e: e.metric("images_per_s")),
    ("memory", "peak memory", "MiB", lambda e: _mib(e.peak_memory)),
    ("energy", "energy", "J/image", lambda e: e.metric("joules_per_image")),
)


def _mib(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / 2**20


def measured_figures(study: Study, entries: list[Entry], device: str) -> list[StudyFigure]:
    bench = study.bench
    where = ""
    if bench:
        size = bench.overrides.replace("resolution=", "") if bench.overrides else "224"
        where = f"; {device}, {size}x{size}, batch {bench.batch_size}, {bench.dtype}"
    out = []
    for name, quantity, unit, value in MEASURED:
        points = []
        for e in entries:
            x, top1 = value(e), e.top1()
            if x is not None and top1 is not None:
                points.append(Point(x, top1[0], e.model, family_of(e.model), top1[1]))
        if not points:
            continue
        figure = tradeoff(
            [(f"{quantity} ({unit}{where})", f"measured {name} against top-1", points)],
            title=f"{study.title}: {name}",
            y_label="top-1 accuracy (%)",
            sources={"paper": "top-1 from the paper", "measured": "top-1 measured here"},
        )
        caption = (
            f"Measured {name} against top-1; the top-1 is measured where a training record "
            "exists, else the paper's"
        )
        out.append(StudyFigure(f"{study.name}-{name}", caption, figure))
    return out


def study_figures(study: Study, entries: list[Entry], device: str) -> list[StudyFigure]:
    """Every trade-off figure of the study that has data."""
    cost = cost_figure(study, entries)
    return ([cost] if cost else []) + measured_figures(study, entries, device)


def layer_table(study: Study, entry: Entry, store: RecordStore, device: str) -> Table:
    config = bench_config(study, entry.model, device) if study.bench else None
    timed = store.find("layers", lambda r: config and r.config == config.to_dict())
    times = timed.metrics["layers"] if timed else {}
    rows = []
    for row in entry.cost.grouped("block"):
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
        f"{entry.model}: per block, analytic at 224x224{where}",
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
            fixed(r["forward_ms"], 3),
            fixed(r["forward_backward_ms"], 3),
            fixed(r["floor_ratio"], 1),
            fixed(r["conv_ratio"], 1),
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
            entries = entries_of(study, store, device)
            table = comparison_table(study, entries)
            blocks.append(table)
            (folder / "tables" / f"{study.name}.csv").write_text(to_csv(table.headers, table.rows))
            for made in study_figures(study, entries, device):
                png = _save(made.figure, folder, made.name)
                blocks.append(Figure(made.name, made.caption, png))
            if study.layer_tables:
                blocks.append(Heading(3, "Per-block tables"))
                blocks += [layer_table(study, e, store, device) for e in entries]
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

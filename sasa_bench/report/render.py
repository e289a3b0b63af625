"""Records -> report.md, index.html, figures (PNG + SVG), tables (CSV), records.csv."""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt

from sasa_bench import paper
from sasa_bench.counters import COUNTERS, model_cost_of
from sasa_bench.format import fixed, human, to_csv
from sasa_bench.layers.cost import ModelCost
from sasa_bench.measure.timing import summarize
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.models.thirdparty import ThirdPartySpec, is_thirdparty
from sasa_bench.records import Record, environment, to_dataframe
from sasa_bench.report.counts import counts_config, spread
from sasa_bench.report.document import (
    Block,
    Figure,
    Heading,
    Links,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)
from sasa_bench.report.plots import Panel, Point, family_of, tradeoff
from sasa_bench.report.store import RecordStore, accuracy_summary, bench_config, trains
from sasa_bench.report.study import Study
from sasa_bench.train.seeds import SeedSummary

ROW_HEADERS = (
    "model", "FLOPs B (paper)", "FLOPs B (ours)", "params M (paper)", "params M (ours)",
    "top-1 % (paper, ImageNet)", "top-1 % (measured: mean ± sd, n seeds)", "images/s (IQR, n)",
    "latency ms (IQR)", "peak memory MiB", "J/image",
)  # fmt: skip
#: tables/<study>.csv: one number per cell, the unit in the column's name
CSV_HEADERS = (
    "model", "paper_flops_billions", "flops_billions", "paper_params_millions",
    "params_millions", "paper_top1_pct", "measured_top1_pct", "measured_top1_sd_pct",
    "measured_top1_seeds", "measured_top1_dataset",
    "measured_top1_model", "images_per_s", "images_per_s_iqr", "latency_ms", "latency_iqr_ms",
    "timed_steps", "timer", "threads", "peak_memory_mib", "joules_per_image", "reliable",
    "unreliable_reasons",
)  # fmt: skip
UNRELIABLE = "†"
NOT_IN_PAPER = "not in the paper"


@dataclass(frozen=True)
class Entry:
    """One model of a study: the paper's row, our analytic cost, and the records measured."""

    model: str
    paper: paper.PaperRow | None
    cost: ModelCost  # at the paper's scale (224x224)
    bench: Record | None  # the study's bench plan applied to the model
    accuracy: SeedSummary | None  # top-1 over seeds
    trained_bench: Record | None  # the configuration trained, benchmarked like `bench`
    trained: bool  # whether the study trains this entry
    by_runtime: dict[str, Record | None]  # the bench plan in each of its runtimes

    def metric(self, name: str) -> float | None:
        return self.bench.metrics.get(name) if self.bench else None

    @property
    def peak_memory(self) -> int | None:
        """The allocator's peak on a GPU, the process's peak RSS on a CPU."""
        return peak_bytes(self.bench)


def peak_bytes(record: Record | None) -> int | None:
    return None if record is None else peak_bytes_of(record.metrics)


def peak_bytes_of(metrics: dict) -> int | None:
    """The allocator's peak on a GPU, else the process's peak RSS."""
    return metrics.get("peak_allocated_bytes") or metrics.get("peak_rss_bytes")


def entries_of(study: Study, store: RecordStore, device: str) -> list[Entry]:
    def bench_of(model: str, trained: bool = False) -> Record | None:
        wanted = bench_config(study, model, device, trained=trained)
        return store.find("bench", lambda r: wanted.describes(r.config))

    def outcome_in(model: str, runtime: str) -> Record | None:  # a failure too
        wanted = bench_config(study, model, device, runtime=runtime)
        return store.outcome("bench", lambda r: wanted.describes(r.config))

    entries = []
    for model in study.models:
        trained = trains(study, model)
        entries.append(
            Entry(
                model,
                paper.row_for(model, study.paper_table) if study.paper_table else None,
                model_cost_of(parse_model(model).spec),  # a third-party one: traced
                bench_of(model) if study.bench else None,
                accuracy_summary(store, study, model),
                bench_of(model, trained=True) if study.bench and trained else None,
                trained,
                {rt: outcome_in(model, rt) for rt in study.bench.runtimes} if study.bench else {},
            )
        )
    return entries


# -- the comparison table ------------------------------------------------------------------
def spread_cell(value: float | None, iqr: float | None, samples: int | None, digits: int) -> str:
    text = f"{value:.{digits}f} (IQR {iqr:.{digits}f}"
    return text + (f", n={samples})" if samples else ")")


def measured_cells(e: Entry, device: str) -> list[str]:
    """images/s, latency, peak memory and J/image of the entry, each saying why where empty."""
    if e.bench is None:
        return ["not measured"] * 4
    m = e.bench.metrics
    mark = "" if m.get("reliable", True) else f" {UNRELIABLE}"
    images = spread_cell(m["images_per_s"], m.get("images_per_s_iqr"), m.get("samples"), 1)
    latency = spread_cell(m["latency_ms"], m.get("latency_iqr_ms"), None, 2)
    memory = fixed(e.peak_memory / 2**20, 1) if e.peak_memory else "not measured"
    if m.get("joules_per_image") is not None:
        energy = fixed(m["joules_per_image"], 3)
    elif device.startswith("cuda"):
        energy = "no NVML energy reading"
    else:
        energy = "no energy counter on a CPU"
    return [images + mark, latency + mark, memory, energy]


def accuracy_cell(e: Entry) -> str:
    if e.accuracy:
        return f"{e.accuracy.text()} ({e.accuracy.data}, {e.accuracy.model})"
    return "no training record" if e.trained else "not trained in this report"


def comparison_table(study: Study, entries: list[Entry], device: str) -> Table:
    rows = []
    for e in entries:
        p = e.paper
        paper_top1 = NOT_IN_PAPER
        if p and p.top1 is not None:
            paper_top1 = f"{p.top1}" + (" (held-out)" if p.accuracy_split == "held-out" else "")
        rows.append([
            e.model, fixed(p.flops_b, 1) if p and p.flops_b else NOT_IN_PAPER,
            f"{e.cost.flops / 1e9:.2f}",
            fixed(p.params_m, 1) if p and p.params_m else NOT_IN_PAPER,
            f"{e.cost.params / 1e6:.2f}", paper_top1, accuracy_cell(e), *measured_cells(e, device),
        ])  # fmt: skip
    parts = []
    if study.paper_table:
        parts.append("paper = reported by Ramachandran et al. 2019 (top-1 on ImageNet)")
    parts.append("ours = analytic at 224x224 (FLOPs = 2 x MACs)")
    traced = [e.model for e in entries if is_thirdparty(e.model)]
    if traced:
        parts.append(f"{', '.join(traced)}: no analytic count, traced by torch's FlopCounterMode "
                     "with sasa_bench's handlers at the model's default input size")  # fmt: skip
    if study.bench:
        parts += [
            f"measured here: {bench_setting(study, entries)}",
            "images/s and latency per batch: median (IQR) over n timed steps",
            "peak memory = the allocator's peak on a GPU, the process's peak RSS on a CPU",
        ]
    if study.train:
        plan = study.train
        parts.append(
            f"top-1 measured here: {plan.data}, {plan.epochs} epochs, seeds "
            f"{', '.join(map(str, plan.seeds))}, test split"
        )
    return Table(ROW_HEADERS, rows, "; ".join(parts))


def bench_setting(study: Study, entries: list[Entry]) -> str:
    """How the study's measurements ran: size, batch, dtype, timer and threads."""
    plan = study.bench
    if plan is None:
        return "nothing"
    size = plan.overrides.replace("resolution=", "") if "resolution=" in plan.overrides else "224"
    timers = sorted({(e.bench.metrics.get("timer"), e.bench.metrics.get("threads"))
                     for e in entries if e.bench})  # fmt: skip
    timed = ", ".join(f"timer {timer}, {threads} thread(s)" for timer, threads in timers)
    return f"{size}x{size}, batch {plan.batch_size}, {plan.dtype}" + (f", {timed}" if timed else "")


def unreliable_note(entries: list[Entry]) -> Paragraph | None:
    """The legend of the table's unreliable mark: each marked number and why."""
    lines = []
    for e in entries:
        for record in (e.bench, e.trained_bench):
            if record and not record.metrics.get("reliable", True):
                reasons = "; ".join(record.metrics.get("unreliable_reasons", []))
                lines.append(f"{record.model}: {reasons}")
    if not lines:
        return None
    return Paragraph(f"{UNRELIABLE} unreliable (measured, but not to be taken as fact): " +
                     " | ".join(lines))  # fmt: skip


def csv_rows(entries: list[Entry]) -> list[list[object]]:
    """The comparison as numbers: one per cell, empty where there is none."""
    rows = []
    for e in entries:
        p, acc = e.paper, e.accuracy
        m = e.bench.metrics if e.bench else {}
        rows.append([
            e.model, p.flops_b if p else None, round(e.cost.flops / 1e9, 4),
            p.params_m if p else None, round(e.cost.params / 1e6, 4), p.top1 if p else None,
            round(acc.mean, 4) if acc else None,
            None if acc is None or acc.sd is None else round(acc.sd, 4), acc.n if acc else None,
            acc.data if acc else None,
            acc.model if acc else None, m.get("images_per_s"), m.get("images_per_s_iqr"),
            m.get("latency_ms"), m.get("latency_iqr_ms"), m.get("samples"), m.get("timer"),
            m.get("threads"), e.peak_memory / 2**20 if e.peak_memory else None,
            m.get("joules_per_image"),
            None if not m else int(bool(m.get("reliable", True))),
            "; ".join(m.get("unreliable_reasons", [])) or None,
        ])  # fmt: skip
    return [["" if v is None else v for v in row] for row in rows]


# -- figures ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyFigure:
    name: str  # file stem under figures/
    caption: str
    figure: object  # a matplotlib Figure


def describe_model(model: str) -> str:
    """`<res>x<res>, width <w>` of a model name: what its numbers were measured at."""
    spec = parse_model(model).spec
    width = "" if isinstance(spec, ThirdPartySpec) else f", width {spec.width:g}"
    return f"{spec.resolution}x{spec.resolution}{width}"


def trained_panels(
    trained: list[Entry], x_of: Callable[[Entry], float | None], axis: str, what: str
) -> list[Panel]:
    """Measured top-1 (mean over seeds, error bar ± sd) of the models trained here against
    `x_of` of the same configuration: one panel per dataset, so that no accuracy axis mixes
    two."""
    panels = []
    for data in dict.fromkeys(e.accuracy.data for e in trained):
        points = []
        for e in (e for e in trained if e.accuracy.data == data):
            x, acc = x_of(e), e.accuracy
            if x is not None:
                points.append(
                    Point(x, acc.mean, acc.model, family_of(e.model), "measured", y_err=acc.sd)
                )
        if not points:
            continue
        first = next(e.accuracy for e in trained if e.accuracy.data == data)
        seeds = sorted({e.accuracy.n for e in trained if e.accuracy.data == data})
        title = (f"measured here: {data} top-1 (mean ± sd over {'/'.join(map(str, seeds))} "
                 f"seeds) against {what} ({describe_model(first.model)})")  # fmt: skip
        panels.append(Panel(title, axis, f"{data} top-1 (%), measured", tuple(points)))
    return panels


COSTS = (("flops", "FLOPs (billions, per image)", 1e9), ("params", "parameters (millions)", 1e6))


def cost_figure(study: Study, entries: list[Entry]) -> StudyFigure | None:
    """Top-1 against cost: the paper's numbers in their own panels, ours (the models trained
    here, at the cost of what was trained) in theirs: one dataset per accuracy axis."""
    panels = []
    for key, axis, _ in COSTS:
        points = []
        for e in entries:
            p = e.paper
            reported = (p.flops_b if key == "flops" else p.params_m) if p else None
            if p and p.top1 is not None and reported:
                points.append(Point(reported, p.top1, e.model, family_of(e.model), "paper"))
        if points:
            title = f"paper: ImageNet top-1 against {key} (224x224, width 1)"
            panels.append(Panel(title, axis, "ImageNet top-1 (%), paper", tuple(points)))
    trained = [e for e in entries if e.accuracy]
    for key, axis, scale in COSTS:

        def cost(e: Entry, key: str = key, scale: float = scale) -> float:
            return getattr(model_cost(parse_model(e.accuracy.model).spec), key) / scale

        panels += trained_panels(trained, cost, axis, key)
    if not panels:
        return None
    caption = (
        "Top-1 against cost: the paper's ImageNet numbers and the models trained here, each "
        "in its own panels (one dataset per accuracy axis)"
    )
    figure = tradeoff(panels, title=f"{study.title}: cost against accuracy")
    return StudyFigure(f"{study.name}-cost", caption, figure)


#: measured quantities: (figure name, axis label, value of a bench record)
MEASURED = (
    ("throughput", "images/s (median)", lambda r: r.metrics.get("images_per_s")),
    ("memory", "peak memory (MiB)", lambda r: _mib(peak_bytes(r))),
    ("energy", "energy (J/image)", lambda r: r.metrics.get("joules_per_image")),
)


def _mib(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / 2**20


def measured_figures(study: Study, entries: list[Entry], device: str) -> list[StudyFigure]:
    """Each measured quantity against the analytic FLOPs of the configuration measured; and,
    for the models trained here, against their top-1 (speed and accuracy of one model)."""
    out = []
    setting = bench_setting(study, entries)
    for name, axis, value in MEASURED:
        panels = []
        points = []
        for e in entries:
            x = value(e.bench) if e.bench else None
            if x is not None:
                flops = model_cost_of(parse_model(e.bench.model).spec).flops / 1e9
                points.append(Point(flops, x, e.bench.model, family_of(e.model), "measured"))
        if points:
            title = f"measured here: {name} against FLOPs ({device}, {setting})"
            panels.append(Panel(title, "FLOPs (billions, per image, analytic)", axis,
                                tuple(points)))  # fmt: skip
        trained = [e for e in entries if e.accuracy and e.trained_bench]
        panels += trained_panels(
            trained, lambda e, value=value: value(e.trained_bench), axis,
            f"{name} of the trained models",
        )  # fmt: skip
        if panels:
            caption = (
                f"Measured {name}: against the FLOPs of the configuration measured, and against "
                "the top-1 of the same configuration where it was trained here"
            )
            figure = tradeoff(panels, title=f"{study.title}: {name}")
            out.append(StudyFigure(f"{study.name}-{name}", caption, figure))
    return out


def study_figures(study: Study, entries: list[Entry], device: str) -> list[StudyFigure]:
    """Every trade-off figure of the study that has data."""
    cost = cost_figure(study, entries)
    return ([cost] if cost else []) + measured_figures(study, entries, device)


# -- per-block tables ------------------------------------------------------------------------
def layer_table(study: Study, entry: Entry, store: RecordStore, device: str) -> Table:
    """Params, FLOPs and activations per block at the resolution the latency was measured at,
    beside the measured latency (median and IQR over the passes)."""
    config = bench_config(study, entry.model, device) if study.bench else None
    timed = store.find("layers", lambda r: config and config.describes(r.config))
    if timed is None:
        rows = [[row["name"], human(row["params"]), human(row["flops"]), human(row["activations"]),
                 f"{100 * row['flops_share']:.1f}%", "not measured"]
                for row in entry.cost.grouped("block")]  # fmt: skip
        caption = f"{entry.model}: per block, analytic at 224x224; latency not measured"
        return Table(BLOCK_HEADERS, rows, caption)
    cost = model_cost(parse_model(timed.model).spec)
    samples = timed.metrics.get("layer_samples_ms") or {
        name: [ms] for name, ms in timed.metrics["layers"].items()
    }
    rows = []
    for row in cost.grouped("block"):
        prefix = row["name"]
        mine = [v for n, v in samples.items() if n == prefix or n.startswith(prefix + ".")]
        per_pass = [sum(values) for values in zip(*mine, strict=True)] if mine else [0.0]
        stats = summarize(per_pass)
        rows.append([prefix, human(row["params"]), human(row["flops"]), human(row["activations"]),
                     f"{100 * row['flops_share']:.1f}%",
                     f"{stats.median_ms:.3f} (IQR {stats.iqr_ms:.3f})"])  # fmt: skip
    size = parse_model(timed.model).spec.resolution
    caption = (
        f"{entry.model}: per block at {size}x{size} ({timed.model}): analytic params, FLOPs "
        f"and activations, and latency measured at the same size, batch 1, {device}, timer "
        f"{timed.metrics.get('timer', '?')}: median (IQR) over {len(per_pass)} passes"
    )
    return Table(BLOCK_HEADERS, rows, caption)


BLOCK_HEADERS = ("block", "params", "FLOPs", "activations", "FLOPs share", "latency ms (IQR)")


def runtime_cell(record: Record | None) -> str:
    """images/s (IQR) in one runtime, or why there is none."""
    if record is None:
        return "not measured"
    if record.status != "ok":
        return f"failed: {(record.error or '').splitlines()[0][:60]}"
    m = record.metrics
    mark = "" if m.get("reliable", True) else f" {UNRELIABLE}"
    return spread_cell(m["images_per_s"], m.get("images_per_s_iqr"), None, 1) + mark


def images_per_s(record: Record | None) -> float | None:
    return record.metrics["images_per_s"] if record and record.status == "ok" else None


def ratio_text(top: float | None, bottom: float | None) -> str:
    return fixed(top / bottom, 2) if top and bottom else "-"


def runtime_table(study: Study, entries: list[Entry]) -> Table:
    """Each entry in each runtime of the bench plan: images/s, the speed-up over the first
    runtime, and (with a baseline entry) the entry's speed over the baseline's in the same
    runtime: what a runtime does to one family against another."""
    runtimes = study.bench.runtimes
    first = runtimes[0]
    base = next((e for e in entries if e.model == study.baseline), None)
    headers = ["model", *(f"{rt} images/s (IQR)" for rt in runtimes)]
    headers += [f"{rt} / {first}" for rt in runtimes[1:]]
    if base:
        headers += [f"{base.model} / model, {rt}" for rt in runtimes]
    rows = []
    for e in entries:
        speeds = {rt: images_per_s(e.by_runtime.get(rt)) for rt in runtimes}
        row = [e.model, *(runtime_cell(e.by_runtime.get(rt)) for rt in runtimes)]
        row += [ratio_text(speeds[rt], speeds[first]) for rt in runtimes[1:]]
        if base:
            row += [
                ratio_text(images_per_s(base.by_runtime.get(rt)), speeds[rt]) for rt in runtimes
            ]
        rows.append(row)
    parts = [
        f"images/s: median (IQR) over the timed steps, {bench_setting(study, entries)}",
        "every runtime but eager was checked against the float64 network's outputs before it "
        "was timed (a mismatch is a failed cell)",
        f"RUNTIME / {first}: the runtime's speed-up over {first}",
    ]
    if base:
        parts.append(f"{base.model} / model: how many times slower the model is than "
                     f"{base.model} in that runtime")  # fmt: skip
    caption = "; ".join(parts)
    return Table(headers, rows, caption)


def counts_table(study: Study, store: RecordStore) -> Table:
    """Every traced counter's MACs per entry, beside the cost the report uses."""
    rows = []
    for model in study.models:
        wanted = counts_config(model)
        record = store.outcome("counts", lambda r, wanted=wanted: r.config == wanted)
        if record is None or record.status != "ok":
            why = "not counted" if record is None else f"failed: {(record.error or '')[:80]}"
            rows.append([wanted["model"], "-", "-", *[why] * len(COUNTERS), "-", "-"])
            continue
        macs = record.metrics["macs"]
        cells = [fixed(macs[name] / 1e9, 3) if macs.get(name) else "could not run"
                 for name in COUNTERS]  # fmt: skip
        apart = spread(record)
        source = "traced by torch" if record.cost.get("counted") else "analytic"
        rows.append([
            record.model, fixed(record.cost["params"] / 1e6, 2), str(record.metrics["resolution"]),
            *cells, "-" if apart is None else fixed(100 * apart, 2),
            f"{fixed(record.cost['macs'] / 1e9, 3)} ({source})",
        ])  # fmt: skip
    headers = ("model", "params (M)", "input", *(f"{name} GMACs" for name in COUNTERS),
               "apart (%)", "cost used (GMACs)")  # fmt: skip
    caption = (
        "MACs per image at each model's input size, counted by each traced counter with "
        "sasa_bench's handlers (docs/counting.md); apart = (largest - smallest) / smallest; the "
        "cost used is the analytic count for sasa_bench's models, torch's traced count for "
        "third-party ones (which have no analytic count)"
    )
    return Table(headers, rows, caption)


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


def hardware_line(env: dict, records: list[Record]) -> str:
    """Where the numbers were measured, and how busy the machine was meanwhile."""
    timed = [r for r in records if r.kind == "bench" and r.status == "ok"]
    threads = sorted({r.metrics.get("threads") for r in timed if r.metrics.get("threads")})
    busy = [r.metrics.get("contention", {}).get("other_busy_cores") for r in timed]
    busy = [b for b in busy if b is not None]
    contended = sum(bool(r.metrics.get("contention", {}).get("seen")) for r in timed)
    parts = [f"CPU {env['cpu']} ({env['cpu_count']} cores)"]
    if env.get("gpu"):
        parts.append(f"GPU {env['gpu']} (driver {env.get('driver') or 'unknown'})")
    parts.append(f"torch {env['torch']}")
    if threads:
        parts.append(f"torch threads used: {', '.join(map(str, threads))}")
    if busy:
        parts.append(
            f"load from other processes during the measurements: {min(busy):.1f} to "
            f"{max(busy):.1f} busy cores; contention seen in {contended} of {len(timed)}"
        )
    return "Hardware: " + "; ".join(parts) + "."


def render_report(
    folder: Path, studies: list[Study], store: RecordStore, *, device: str, smoke: bool
) -> None:
    env = environment(device)
    records = store.external + store.records
    title = f"sasa_bench report: {', '.join(s.name for s in studies)}"
    blocks: list[Block] = [
        Heading(1, title),
        Paragraph(
            f"Generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC from "
            f"{len(records)} records on {device}"
            f"{' (smoke: CPU-sized)' if smoke else ''}. Paper numbers are labelled as "
            "the paper's; every other number was computed or measured by sasa_bench."
        ),
        Paragraph(hardware_line(env, records)),
        Links("Raw records", (("records.jsonl", "records.jsonl"), ("records.csv", "records.csv"))),
    ]
    (folder / "tables").mkdir(exist_ok=True)
    for study in studies:
        blocks.append(Heading(2, study.title))
        blocks += [Paragraph(note) for note in study.notes]
        if study.models:
            entries = entries_of(study, store, device)
            blocks.append(comparison_table(study, entries, device))
            note = unreliable_note(entries)
            blocks += [note] if note else []
            csv = folder / "tables" / f"{study.name}.csv"
            csv.write_text(to_csv(CSV_HEADERS, csv_rows(entries)))
            blocks.append(
                Links("Table as numbers", ((f"tables/{csv.name}", f"tables/{csv.name}"),))
            )
            for made in study_figures(study, entries, device):
                png = _save(made.figure, folder, made.name)
                blocks.append(Figure(made.name, made.caption, png))
            if study.bench and len(study.bench.runtimes) > 1:
                blocks.append(Heading(3, "Runtimes"))
                blocks.append(runtime_table(study, entries))
            if study.counters:
                blocks.append(Heading(3, "The counters side by side"))
                blocks.append(counts_table(study, store))
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
    blocks.append(Paragraph("Figures as PNG and SVG under figures/, tables as CSV under tables/."))
    (folder / "report.md").write_text(render_markdown(blocks))
    (folder / "index.html").write_text(render_html(blocks, title))
    if records:
        to_dataframe(records).to_csv(folder / "records.csv", index=False)

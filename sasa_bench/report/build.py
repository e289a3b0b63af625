"""`sasa-bench report`: find what the studies need and is not yet recorded, have it measured,
then render.

The measuring itself is `sasa_bench.measure` and `sasa_bench.train`; this module plans it and
hands each result to the record store (`report.store`), where it is appended the moment it
exists: a second run (after an interruption, or to add studies) measures only what is missing.
Costs are analytic and always recomputed. The Markdown and HTML come from the records only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from sasa_bench.cluster.slurm import SlurmOptions, Submitted, Task, run_tasks, task_key
from sasa_bench.devices import check_device
from sasa_bench.errors import SasaBenchError
from sasa_bench.measure.kernels import kernel_record
from sasa_bench.measure.layers import layer_record
from sasa_bench.measure.model import measure
from sasa_bench.measure.sweep import placeholder
from sasa_bench.records import Record, environment, load_records
from sasa_bench.report.counts import counts_config, counts_record, spread
from sasa_bench.report.render import render_report
from sasa_bench.report.store import (
    RecordStore,
    bench_config,
    trained_model,
    trained_record,
    trains,
)
from sasa_bench.report.study import DEFAULT_STUDIES, EXPERIMENTS_DIR, Study, load_study
from sasa_bench.train.runs import run_folder, train_record

REPORTS_DIR = Path("reports")


def folder_name(device: str, smoke: bool) -> str:
    """Named by environment: device kind, hardware, torch version (timm's result naming)."""
    env = environment(device)
    hardware = env["gpu"] if device.startswith("cuda") and env["gpu"] else env["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", str(hardware).lower()).strip("-")[:40]
    torch_version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    kind = device.split(":")[0]
    return f"{kind}-{slug}-pt{torch_version}" + ("-smoke" if smoke else "")


def plan_work(studies: list[Study], store: RecordStore, device: str) -> list[tuple[str, object]]:
    """What is missing: ("bench", BenchConfig), ("layers", BenchConfig), ("train", (study,
    model, seed)), ("kernels", study), ("counts", model). The configurations a study trains are
    benchmarked too."""
    work: list[tuple[str, object]] = []
    seen: set[object] = set()

    def want(kind: str, item: object, key: object, found: bool) -> None:
        if key not in seen and not found:
            work.append((kind, item))
        seen.add(key)

    def recorded(kind: str, config) -> bool:
        return store.find(kind, lambda r: config.describes(r.config)) is not None

    for study in studies:
        for model in study.models:
            if study.bench:
                for runtime in study.bench.runtimes:
                    config = bench_config(study, model, device, runtime=runtime)
                    want("bench", config, ("bench", config), recorded("bench", config))
                config = bench_config(study, model, device)
                if study.layer_tables:
                    want("layers", config, ("layers", config), recorded("layers", config))
            if trains(study, model):
                plan = study.train
                name = trained_model(model, plan.overrides, plan.data)
                for seed in plan.seeds:
                    found = trained_record(store, study, model, seed) is not None
                    key = ("train", name, plan.data, plan.epochs, plan.recipe, seed)
                    want("train", (study, model, seed), key, found)
                if study.bench:
                    config = bench_config(study, model, device, trained=True)
                    want("bench", config, ("bench", config), recorded("bench", config))
        if study.kernels:
            found = store.find("kernels", lambda r: r.config.get("device") == device)
            want("kernels", study, ("kernels", device), found is not None)
        for model in study.models if study.counters else ():
            wanted = counts_config(model)
            found = store.find("counts", lambda r, wanted=wanted: r.config == wanted)
            want("counts", model, ("counts", wanted["model"]), found is not None)
    return work


def measure_item(kind: str, item: object, device: str, folder: Path, note: Note) -> Record:
    """Measure one missing item (each function returns a failed Record instead of raising)."""
    if kind == "bench":
        return measure(item)
    if kind == "layers":
        return layer_record(item)
    if kind == "kernels":
        return kernel_record(device)
    if kind == "counts":
        return counts_record(item)
    study, model, seed = item
    plan = study.train
    name = trained_model(model, plan.overrides, plan.data)
    # On a CPU the unfold backend trains several times faster than the bounded-memory
    # reference loop on these small maps (exact backends: same weights, same outputs); one
    # thread, as every CPU-sized measurement of a report.
    impl, threads = ("unfold", 1) if device == "cpu" else ("reference", None)
    return train_record(
        name,
        data=plan.data,
        recipe=plan.recipe,
        epochs=plan.epochs,
        device=device,
        attn_impl=impl,
        out=run_folder(folder / "runs", name) / f"seed-{seed}",
        threads=threads,
        seed=seed,
        echo=note,
    )


def measure_on_slurm(
    work: list[tuple[str, object]],
    store: RecordStore,
    device: str,
    folder: Path,
    progress: ReportProgress,
    slurm: SlurmOptions,
) -> None:
    """The missing items as one Slurm job array, each record stored as its task ends (a
    `cuda` device on a node is the GPU Slurm gave the task)."""
    tasks, labels = [], {}
    for kind, item in work:
        key = task_key([kind, identity(kind, item, device)])
        args = (kind, item, device, folder, print)
        tasks.append(Task(key, measure_item, args, failed_item(kind, item, device)))
        labels[key] = label(kind, item)
    started = time.perf_counter()

    def submitted(what: Submitted) -> None:
        ids = sorted({job.partition("_")[0] for job in what.submitted + what.followed})
        progress.start(f"slurm: {len(tasks)} task(s) in job(s) {', '.join(ids)}")

    def landed(task: Task, record: Record) -> None:
        store.add(record)
        progress.finish(labels[task.key], time.perf_counter() - started, outcome(record))

    run_tasks(tasks, slurm, on_submitted=submitted, on_record=landed)


def identity(kind: str, item: object, device: str) -> object:
    """What tells one work item from every other (JSON-able): a configuration, a training
    run, the device of a kernel study."""
    if kind in ("bench", "layers"):
        return item.to_dict()
    if kind == "train":
        study, model, seed = item
        plan = study.train
        return [trained_model(model, plan.overrides, plan.data), plan.data, plan.epochs,
                plan.recipe, seed]  # fmt: skip
    if kind == "counts":
        return counts_config(item)
    return device


def failed_item(kind: str, item: object, device: str) -> Callable[[str], Record]:
    """The failed Record an item leaves when its Slurm task never returns."""
    if kind == "bench":
        return partial(placeholder, item)

    def failed(reason: str) -> Record:
        if kind == "train":
            study, model, seed = item
            plan = study.train
            name = trained_model(model, plan.overrides, plan.data)
            config = {"data": plan.data, "epochs": plan.epochs, "recipe": plan.recipe, "seed": seed}
            return Record("train", name, status="failed", error=reason, config=config)
        if kind == "counts":
            config = counts_config(item)
            return Record(kind, config["model"], status="failed", error=reason, config=config)
        model = item.model if kind == "layers" else "-"
        config = item.to_dict() if kind == "layers" else {"device": device}
        return Record(kind, model, status="failed", error=reason, config=config)

    return failed


def label(kind: str, item: object) -> str:
    if kind == "kernels":
        return "kernels: the attention backends beside a 3x3 conv"
    if kind == "counts":
        return f"counts {item}: every traced counter"
    if kind == "train":
        return f"train {item[1]} seed {item[2]}"
    runtime = getattr(item, "runtime", "eager")
    return f"{kind} {item.model}" + (f" in {runtime}" if runtime != "eager" else "")


def outcome(record: Record) -> str:
    """What a finished item measured, in a few words."""
    if record.status != "ok":
        return f"failed: {(record.error or '').splitlines()[0][:120]}"
    m = record.metrics
    if record.kind == "counts":
        apart = spread(record)
        return "counted" + ("" if apart is None else f": counters {100 * apart:.2f} % apart")
    if record.kind == "bench":
        text = f"{m['images_per_s']:.1f} images/s (IQR {100 * m['spread']:.0f}%, n={m['samples']})"
        return text + ("" if m.get("reliable", True) else " UNRELIABLE")
    if record.kind == "train":
        return f"top-1 {m['top1']:.1f}% ({record.model}, seed {record.config.get('seed')})"
    return "recorded"


Note = Callable[[str], None]


class ReportProgress:
    """What a report says while it works; this one says nothing. The CLI's subclasses draw a
    terminal's bar or print plain lines for a log."""

    def begin(self, total: int) -> None:
        """`total` items are to be measured."""

    def start(self, label: str) -> None:
        """An item starts."""

    def finish(self, label: str, seconds: float, outcome: str) -> None:
        """An item ended after `seconds`, with `outcome` in a few words."""

    def note(self, text: str) -> None:
        """A line of work in progress (a training epoch)."""


def build_report(
    names: list[str] | None = None,
    *,
    device: str = "cpu",
    smoke: bool = False,
    results: list[str] | None = None,
    out: str | Path | None = None,
    progress: ReportProgress | None = None,
    experiments: Path = EXPERIMENTS_DIR,
    slurm: SlurmOptions | None = None,
) -> Path:
    """Measure what is missing (here, or as Slurm array tasks with `slurm`), render report.md,
    index.html, figures and tables; return the report folder."""
    if slurm is None:  # on Slurm, the device is the nodes'
        check_device(device)
    studies = [load_study(name, smoke, experiments) for name in (names or DEFAULT_STUDIES)]
    if not smoke and device.split(":")[0] == "cpu":  # refused before any work
        raise SasaBenchError(
            f"{' '.join(s.name for s in studies)} without --smoke is sized for a GPU (batch 64 "
            "at 224x224: hours on a CPU): add --smoke for the CPU-sized run, or --device cuda"
        )
    folder = Path(out) if out else REPORTS_DIR / folder_name(device, smoke)
    folder.mkdir(parents=True, exist_ok=True)
    store = RecordStore(folder / "records.jsonl", load_records(results) if results else [])
    work = plan_work(studies, store, device)
    for kind, item in work:  # a missing runtime or model library: said before any work
        if kind == "bench":
            item.validate(here=slurm is None)
    progress = progress or ReportProgress()
    progress.begin(len(work))
    if slurm is not None:
        measure_on_slurm(work, store, device, folder, progress, slurm)
    for kind, item in [] if slurm else work:
        name = label(kind, item)
        progress.start(name)
        start = time.perf_counter()
        record = store.add(measure_item(kind, item, device, folder, progress.note))
        progress.finish(name, time.perf_counter() - start, outcome(record))
    render_report(folder, studies, store, device=device, smoke=smoke)
    return folder

"""`sasa-bench report`: find what the studies need and is not yet recorded, have it measured,
then render.

The measuring itself is `sasa_bench.measure` and `sasa_bench.train`; this module plans it and
hands each result to the record store (`report.store`), where it is appended the moment it
exists: a second run (after an interruption, or to add studies) measures only what is missing.
Costs are analytic and always recomputed. The Markdown and HTML come from the records only.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from rich.progress import Progress

from sasa_bench.devices import check_device
from sasa_bench.measure.kernels import kernel_record
from sasa_bench.measure.layers import layer_record
from sasa_bench.measure.model import measure
from sasa_bench.records import environment, load_records
from sasa_bench.report.render import render_report
from sasa_bench.report.store import RecordStore, accuracy_record, bench_config, trained_model
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
    """What is missing: ("bench", BenchConfig), ("train", (study, model)), ("kernels", study),
    ("layers", BenchConfig)."""
    work: list[tuple[str, object]] = []
    seen: set[object] = set()
    for study in studies:
        for model in study.models:
            if study.bench:
                config = bench_config(study, model, device)
                wanted = config.to_dict()
                if config not in seen and not store.find(
                    "bench", lambda r, w=wanted: r.config == w
                ):
                    work.append(("bench", config))
                seen.add(config)
                if (
                    study.layer_tables
                    and ("layers", config) not in seen
                    and not store.find("layers", lambda r, w=wanted: r.config == w)
                ):
                    work.append(("layers", config))
                seen.add(("layers", config))
            if (
                study.train
                and model in study.train.models
                and not accuracy_record(store, study, model)
            ):
                key = ("train", trained_model(model, study.train.overrides, study.train.data))
                if key not in seen:
                    work.append(("train", (study, model)))
                seen.add(key)
        if study.kernels and not store.find("kernels", lambda r: r.config.get("device") == device):
            work.append(("kernels", study))
    return work


def run_work(kind: str, item: object, store: RecordStore, device: str, folder: Path) -> None:
    """Measure one missing item (each function records a failure instead of raising)."""
    if kind == "bench":
        store.add(measure(item))
    elif kind == "layers":
        store.add(layer_record(item))
    elif kind == "train":
        study, model = item
        plan = study.train
        name = trained_model(model, plan.overrides, plan.data)
        # On a CPU the unfold backend trains several times faster than the bounded-memory
        # reference loop on these small maps (exact backends: same weights, same outputs).
        impl = "unfold" if device == "cpu" else "reference"
        store.add(
            train_record(
                name,
                data=plan.data,
                recipe=plan.recipe,
                epochs=plan.epochs,
                device=device,
                attn_impl=impl,
                out=run_folder(folder / "runs", name),
            )  # fmt: skip
        )
    else:
        store.add(kernel_record(device))


def build_report(
    names: list[str] | None = None,
    *,
    device: str = "cpu",
    smoke: bool = False,
    results: list[str] | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
    experiments: Path = EXPERIMENTS_DIR,
) -> Path:
    """Measure what is missing, render report.md, index.html, figures and tables; return the
    report folder."""
    check_device(device)
    studies = [load_study(name, smoke, experiments) for name in (names or DEFAULT_STUDIES)]
    folder = Path(out) if out else REPORTS_DIR / folder_name(device, smoke)
    folder.mkdir(parents=True, exist_ok=True)
    store = RecordStore(folder / "records.jsonl", load_records(results) if results else [])
    work = plan_work(studies, store, device)
    progress = progress or Progress(disable=True)
    task = progress.add_task("measuring", total=len(work))
    for kind, item in work:
        label = getattr(item, "model", None) or (item[1] if isinstance(item, tuple) else kind)
        progress.update(task, description=f"{kind}: {label}")
        run_work(kind, item, store, device, folder)
        progress.advance(task)
    progress.update(task, description="rendering")
    render_report(folder, studies, store, device=device, smoke=smoke)
    return folder

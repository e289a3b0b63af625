"""`sasa-bench report`: measure what the studies need and is not yet recorded, then render.

Every measurement becomes a Record appended to `<report>/records.jsonl` the moment it exists;
a second run (after an interruption, or to add studies) measures only what is missing. Costs
are analytic and always recomputed. The Markdown and HTML come from those records only.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import torch
from rich.progress import Progress

from sasa_bench.bench import BenchConfig, measure
from sasa_bench.report.study import (
    DEFAULT_STUDIES,
    EXPERIMENTS_DIR,
    Study,
    load_study,
    with_overrides,
)
from sasa_bench.results import Record, append_record, environment, load_records

REPORTS_DIR = Path("reports")


def folder_name(device: str, smoke: bool) -> str:
    """Named by environment: device kind, hardware, torch version (timm's result naming)."""
    env = environment(device)
    hardware = env["gpu"] if device.startswith("cuda") and env["gpu"] else env["cpu"]
    slug = re.sub(r"[^a-z0-9]+", "-", str(hardware).lower()).strip("-")[:40]
    torch_version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    kind = device.split(":")[0]
    return f"{kind}-{slug}-pt{torch_version}" + ("-smoke" if smoke else "")


class RecordStore:
    """The report's records file: what exists is reused, what is new is appended at once."""

    def __init__(self, path: Path, external: list[Record]) -> None:
        self.path = path
        self.records = load_records(path) if path.is_file() else []
        self.external = external

    def add(self, record: Record) -> Record:
        append_record(self.path, record)
        self.records.append(record)
        return record

    def find(self, kind: str, match: Callable[[Record], bool]) -> Record | None:
        for record in reversed(self.external + self.records):
            if record.kind == kind and record.status == "ok" and match(record):
                return record
        return None


def bench_config(study: Study, model: str, device: str) -> BenchConfig:
    plan = study.bench
    return BenchConfig(
        with_overrides(model, plan.overrides), device=device, dtype=plan.dtype,
        channels_last=plan.channels_last, batch_size=plan.batch_size, warmup=plan.warmup,
        iters=plan.iters,
    )  # fmt: skip


def trained_model(model: str, overrides: str, data: str) -> str:
    """The canonical name a training run on `data` gives the entry (input size, classes)."""
    from sasa_bench.models.registry import parse_model
    from sasa_bench.train.datasets import open_dataset
    from sasa_bench.train.setup import fit_to_data

    return fit_to_data(parse_model(with_overrides(model, overrides)), open_dataset(data), ()).name


def accuracy_record(store: RecordStore, study: Study, model: str) -> Record | None:
    """A training/eval record of this entry: the study's own smoke run, or one given with
    --results for the model itself (e.g. an ImageNet run of `sasa50`)."""
    names = {with_overrides(model, "")}
    if study.train and model in study.train.models:
        names.add(trained_model(model, study.train.overrides, study.train.data))
    for kind in ("train", "eval"):
        found = store.find(kind, lambda r: r.model in names and "top1" in r.metrics)
        if found:
            return found
    return None


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
    if kind == "bench":
        store.add(measure(item))
    elif kind == "layers":
        store.add(measure_layers(item))
    elif kind == "train":
        store.add(train_entry(*item, device=device, folder=folder))
    else:
        store.add(measure_kernels(device))


def measure_layers(config: BenchConfig) -> Record:
    from sasa_bench.analysis.layer_latency import layer_latency_rows

    record = Record("layers", config.model, config=config.to_dict(), env=environment(config.device))
    try:
        rows = layer_latency_rows(config.model, device=config.device, batch_size=1, iters=3)
        record.metrics = {"layers": {r["name"]: r["time_ms"] for r in rows}}
    except Exception as error:  # recorded, the report goes on
        record.status, record.error = "failed", f"{type(error).__name__}: {error}"
    return record


def train_entry(study: Study, model: str, *, device: str, folder: Path) -> Record:
    from sasa_bench.models.registry import parse_model
    from sasa_bench.train.config import make_config
    from sasa_bench.train.datasets import open_dataset
    from sasa_bench.train.trainer import train

    plan = study.train
    name = trained_model(model, plan.overrides, plan.data)
    out = folder / "runs" / re.sub(r"[^A-Za-z0-9_.=-]+", "_", parse_model(name).name)
    quiet = io.StringIO()
    try:
        # On a CPU the unfold backend trains several times faster than the bounded-memory
        # reference loop on these small maps (exact backends: same weights, same outputs).
        config = make_config(
            model=name,
            data=plan.data,
            recipe=plan.recipe,
            epochs=plan.epochs,
            device=device,
            attn_impl="unfold" if device == "cpu" else "reference",
        )
        return train(
            config,
            open_dataset(plan.data),
            out=out,
            resume=(out / "checkpoint.pt").exists(),
            overwrite=True,
            results=out / "results.jsonl",
            echo=lambda line: quiet.write(line + "\n"),
        )
    except Exception as error:  # a failed run is a record, the report goes on
        return Record(
            "train",
            name,
            status="failed",
            error=f"{type(error).__name__}: {error}",
            config={"data": plan.data, "epochs": plan.epochs},
        )


def measure_kernels(device: str) -> Record:
    from sasa_bench.kernels.bench import SHAPES, bench_shape, copy_bandwidth_gb_per_s
    from sasa_bench.kernels.check import available_backends

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    names = [n for n, reason in available_backends().items() if reason is None]
    bandwidth = copy_bandwidth_gb_per_s(dev, 1024 if cuda else 128)
    rows = []
    for shape in SHAPES["resnet50" if cuda else "tiny"]:
        rows += bench_shape(
            names,
            shape,
            batch=32 if cuda else 2,
            dtype=torch.bfloat16 if cuda else torch.float32,
            device=dev,
            warmup=3 if cuda else 1,
            iters=10 if cuda else 3,
            bandwidth_gb_per_s=bandwidth,
        )
    return Record(
        "kernels",
        "-",
        config={"device": device, "copy_gb_per_s": bandwidth},
        metrics={"rows": [r.to_dict() for r in rows]},
        env=environment(device),
    )


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
    from sasa_bench.bench import check_device
    from sasa_bench.report.render import render_report

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

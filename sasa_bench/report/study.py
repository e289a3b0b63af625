"""Studies: what a report section measures, declared as code in `experiments/<name>.py`.

Each experiment file defines `study(smoke: bool) -> Study`. An entry's `model` is the model at
the paper's scale (it keys the paper's row and the analytic cost at 224x224); the benchmark and
training runs measure it with the study's overrides (in smoke mode: smaller, CPU-sized).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sasa_bench.errors import SasaBenchError, UnknownNameError
from sasa_bench.models.registry import parse_model

DEFAULT_STUDIES = ("table1", "mnist5k")


def experiments_dir() -> Path:
    """experiments/ of the source tree where there is one (a checkout, an editable install),
    else the copy installed with the package (`sasa_bench.experiments`)."""
    source = Path(__file__).resolve().parents[2] / "experiments"
    if source.is_dir():
        return source
    return Path(str(resources.files("sasa_bench") / "experiments"))


EXPERIMENTS_DIR = experiments_dir()


@dataclass(frozen=True)
class Bench:
    """Throughput/memory measurement of every entry on the report's device."""

    overrides: str = ""  # model options appended for the run, e.g. "resolution=64"
    batch_size: int = 64
    dtype: str = "fp32"
    warmup: int = 5
    iters: int = 20  # at least; more until stable or max_time_s is spent (measure.timing)
    channels_last: bool = False
    max_time_s: float = 10.0
    #: sasa_bench.measure.runtimes.RUNTIMES, each a measurement of every entry; the first is
    #: the one the comparison table and figures show, the others are tabulated beside it
    runtimes: tuple[str, ...] = ("eager",)


#: The usual plans: CPU-sized for smoke runs (one thread, timed in its CPU time); bf16,
#: channels-last, batch 64 on a GPU.
SMOKE_BENCH = Bench("resolution=64", batch_size=2, warmup=1, iters=5, max_time_s=1.0)
GPU_BENCH = Bench(batch_size=64, dtype="bf16", channels_last=True)


def default_bench(smoke: bool) -> Bench:
    return SMOKE_BENCH if smoke else GPU_BENCH


@dataclass(frozen=True)
class Train:
    """Accuracy measured by training `models` (entry models) on an embedded dataset."""

    models: tuple[str, ...]
    overrides: str = "width=0.25"
    data: str = "digits"
    epochs: int = 3
    recipe: str = "small"  # sasa_bench.train's named hyperparameters (batch, lr, optimizer)
    seeds: tuple[int, ...] = (0, 1, 2)  # one run each; the report shows mean ± sd over them


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    models: tuple[str, ...]  # entries, at the paper's scale
    paper_table: str | None = None  # the paper table whose rows sit beside ours
    bench: Bench | None = None
    train: Train | None = None
    layer_tables: bool = False  # per-block tables of params, FLOPs, activations, latency
    kernels: bool = False  # attention kernels at the stage shapes beside a conv
    counters: bool = False  # every traced counter's MACs of each entry, side by side
    baseline: str | None = None  # the entry the runtime table's ratios divide by, per runtime
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for model in self.models:
            parse_model(model)  # a typo in a study is an error at load time


def available(directory: Path = EXPERIMENTS_DIR) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        p.stem for p in directory.glob("*.py")
        if not p.name.startswith("_") and "def study(" in p.read_text()
    )  # fmt: skip


def load_study(name: str, smoke: bool, directory: Path = EXPERIMENTS_DIR) -> Study:
    path = directory / f"{name}.py"
    if not path.is_file():
        known = ", ".join(available(directory)) or f"none (no {directory})"
        raise UnknownNameError(f"unknown study {name!r}; known: {known}")
    spec = importlib.util.spec_from_file_location(f"sasa_bench_experiments.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "study"):
        raise SasaBenchError(f"{path} defines no study(smoke) function")
    return module.study(smoke)

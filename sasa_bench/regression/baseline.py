"""The baseline file of `sasa-bench check`: what to measure, and what it measured last time.

A versioned, human-readable JSON file (one line per layer and per list of samples, so a
changed cost shows as a one-line diff in review):

    {"format": "sasa_bench-baseline", "version": 1, "created": ..., "env": {...},
     "settings": {"device": "cpu", "tolerance": 0.5, "alpha": 0.001, ...},
     "costs": {"resnet26": {"params": ..., "macs": ..., "flops": ...,
                            "layers": {"stem.conv": [params, macs, flops], ...}}, ...},
     "speed": [{"name": ..., "a": "attention:reference", "b": "conv3x3", "shape": [14, 14, 32],
                "batch": 2, "mode": "infer", "baseline": {"ratio": ..., "ratio_samples": [...],
                "memory_bytes": {"a": ..., "b": ...}, ...}}, ...]}

The keys of `costs` and the entries of `speed` without their `baseline` are the checks; the
values are what `--update-baseline` measured. To add a check, add its key or entry by hand (a
cost entry may be `{}`) and run `--update-baseline`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sasa_bench import __version__
from sasa_bench.devices import MODES, check_dtype
from sasa_bench.errors import SasaBenchError

FORMAT = "sasa_bench-baseline"
FORMAT_VERSION = 1
#: subjects a speed check can time: an attention backend or a 3x3 conv at the check's shape,
#: or a model of the grammar (`model:sasa26:resolution=32`)
SUBJECT_KINDS = ("attention", "conv3x3", "model")
#: the sections every baseline file has (each may be empty), and what each holds
SECTIONS = {
    "settings": "how to measure; {} for the defaults",
    "costs": "the models whose costs are checked; {} for none",
    "speed": "the speed checks; [] for none",
}
#: how a call is timed: wall clock (CUDA events on a GPU), or the CPU time of the calling thread
TIMERS = ("wall", "thread-cpu")


@dataclass
class Settings:
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    threads: int | None = None  # torch intra-op threads while measuring (CPU); None: default
    timer: str = "wall"  # "wall" (CUDA events on GPUs) or "thread-cpu" (CPU, one thread)
    tolerance: float = 0.10  # a speed ratio fails above (1 + tolerance) x its baseline ...
    alpha: float = 0.001  # ... and only if the U test says so at this level
    memory_tolerance: float = 0.10  # a peak fails above (1 + memory_tolerance) x its baseline
    repeats: int = 15  # interleaved (a, b) pairs per speed check: the ratio samples
    inner: int = 5  # timed calls per side in each repeat (their median is the sample)
    warmup: int = 3  # untimed calls per side before the repeats

    def __post_init__(self) -> None:
        for name in ("tolerance", "memory_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SasaBenchError(f"settings.{name} must be a finite number >= 0, got {value}")
        check_dtype(self.dtype)
        if self.timer not in TIMERS:
            raise SasaBenchError(f"unknown timer {self.timer!r}; known: {', '.join(TIMERS)}")
        if self.timer == "thread-cpu" and (self.threads != 1 or "cpu" not in self.device):
            raise SasaBenchError('timer "thread-cpu" needs device "cpu" and threads 1')
        if not 0 < self.alpha < 1:
            raise SasaBenchError(f"alpha must be between 0 and 1, got {self.alpha}")
        for name, value, least in (
            ("repeats", self.repeats, 2),
            ("inner", self.inner, 1),
            ("warmup", self.warmup, 0),
            ("threads", self.threads, 1),  # 0 is not None: refused, not "the default"
        ):
            if value is not None and value < least:
                raise SasaBenchError(f"settings.{name} must be >= {least}, got {value}")
        if 1 / math.comb(2 * self.repeats, self.repeats) >= self.alpha:
            raise SasaBenchError(  # not even a complete separation would be significant
                f"{self.repeats} repeats cannot reach p < alpha = {self.alpha:g}: raise repeats"
            )


@dataclass
class Measured:
    """One run of a speed check: the ratio samples (a over b, one per interleaved repeat)."""

    ratio: float  # median of ratio_samples
    ratio_samples: list[float]
    a_ms: float  # median time of a call of each side (for the reader; only ratios are compared)
    b_ms: float
    memory_bytes: dict[str, int | None] = field(default_factory=dict)  # "a", "b": peak
    memory_source: str | None = None  # how the peak was taken (compared only when equal)


@dataclass
class SpeedCheck:
    name: str
    a: str  # the subject under test: "attention:IMPL", "conv3x3" or "model:NAME"
    b: str  # the subject it is divided by, timed interleaved with it
    shape: list[int] | None = None  # [height, width, channels] for attention and conv3x3
    batch: int = 1
    mode: str = "infer"  # infer: forward without grad; train: forward + backward
    k: int = 7  # attention window
    heads: int = 8
    attn_impl: str = "reference"  # backend inside model subjects
    tolerance: float | None = None  # overrides settings.tolerance for this check
    baseline: Measured | None = None

    def __post_init__(self) -> None:
        for subject in (self.a, self.b):
            kind = subject.partition(":")[0]
            if kind not in SUBJECT_KINDS:
                raise SasaBenchError(
                    f"speed check {self.name!r}: subject {subject!r} is not one of "
                    "attention:IMPL, conv3x3, model:NAME"
                )
            if kind != "model" and (self.shape is None or len(self.shape) != 3):
                raise SasaBenchError(
                    f"speed check {self.name!r}: {subject!r} needs a shape [height, width, "
                    "channels]"
                )
        if self.mode not in MODES:
            raise SasaBenchError(f"speed check {self.name!r}: mode must be one of {MODES}")
        if self.batch < 1:
            raise SasaBenchError(f"speed check {self.name!r}: batch must be >= 1")


@dataclass
class Baseline:
    settings: Settings = field(default_factory=Settings)
    costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> cost (or {})
    speed: list[SpeedCheck] = field(default_factory=list)
    env: dict[str, Any] | None = None  # where the values were measured
    created: str | None = None
    sasa_bench: str | None = None  # version that wrote it

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": self.created,
            "sasa_bench": self.sasa_bench,
            "env": self.env,
            "settings": dataclasses.asdict(self.settings),
            "costs": self.costs,
            "speed": [_without_none(dataclasses.asdict(check)) for check in self.speed],
        }

    def stamped(self, env: dict[str, Any]) -> Baseline:
        """A copy marked as measured now, in `env`."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return dataclasses.replace(self, env=env, created=now, sasa_bench=__version__)


def load_baseline(path: str | os.PathLike[str]) -> Baseline:
    """Read and validate a baseline file; every problem is a one-line SasaBenchError."""
    path = Path(path)
    if not path.is_file():
        raise SasaBenchError(f"no baseline file {str(path)!r} (make one with --update-baseline)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SasaBenchError(f"baseline {path} is not a text file") from None
    except json.JSONDecodeError as error:
        raise SasaBenchError(
            f"baseline {path} is not valid JSON: {error.msg} at line {error.lineno} "
            f"column {error.colno}"
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise SasaBenchError(f'{path} is not a sasa_bench baseline (no "format": "{FORMAT}")')
    if raw.get("version") != FORMAT_VERSION:
        raise SasaBenchError(
            f"baseline {path} has format version {raw.get('version')!r}; this sasa_bench "
            f"reads version {FORMAT_VERSION} (rewrite it with --update-baseline)"
        )
    try:
        return _parse(raw)
    except SasaBenchError as error:
        raise SasaBenchError(f"baseline {path}: {error}") from None


def _parse(raw: dict[str, Any]) -> Baseline:
    known = {"format", "version", "created", "sasa_bench", "env", "settings", "costs", "speed"}
    _no_unknown(raw, known, "the file")
    # A deleted section would silently check less ("9 ok" without the costs): each must be
    # there, empty ({} or []) where a baseline checks nothing of its kind.
    missing = [name for name in SECTIONS if name not in raw]
    if missing:
        what = ", ".join(f'"{name}" ({SECTIONS[name]})' for name in missing)
        raise SasaBenchError(
            f"missing section(s) {what}: without it the check would test less and pass; put it back"
        )
    costs = raw["costs"]
    if not isinstance(costs, dict) or not all(isinstance(v, dict) for v in costs.values()):
        raise SasaBenchError('"costs" must map model names to objects')
    speed = raw["speed"]
    if not isinstance(speed, list):
        raise SasaBenchError('"speed" must be a list of checks')
    checks = []
    for index, entry in enumerate(speed):
        where = f"speed[{index}]"
        if not isinstance(entry, dict):
            raise SasaBenchError(f"{where} is not an object")
        entry = dict(entry)
        measured = entry.pop("baseline", None)
        check = _build(SpeedCheck, entry, where)
        if measured is not None:
            check.baseline = _build(Measured, measured, f"{where}.baseline")
        checks.append(check)
    names = [check.name for check in checks]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise SasaBenchError(f"speed check names must be unique: {', '.join(duplicated)}")
    return Baseline(
        settings=_build(Settings, raw["settings"], "settings"),
        costs=costs,
        speed=checks,
        env=raw.get("env"),
        created=raw.get("created"),
        sasa_bench=raw.get("sasa_bench"),
    )


def _build(cls: type, raw: Any, where: str) -> Any:
    """cls(**raw), with a message naming the field for a missing, unknown or mistyped one."""
    if not isinstance(raw, dict):
        raise SasaBenchError(f"{where} is not an object")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _no_unknown(raw, set(fields), where)
    hints = typing.get_type_hints(cls)
    for name, f in fields.items():
        missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if missing and name not in raw:
            raise SasaBenchError(f"{where}: missing {name!r}")
        if name in raw and not _is_a(raw[name], hints[name]):
            raise SasaBenchError(f"{where}: {name!r} = {raw[name]!r} is not {hints[name]}")
    return cls(**raw)


def _is_a(value: Any, hint: Any) -> bool:
    """A shallow type check of JSON values against the dataclass annotations."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is not None:
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _no_unknown(raw: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SasaBenchError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _without_none(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if v is not None}


def save_baseline(baseline: Baseline, path: str | os.PathLike[str]) -> None:
    """Write atomically (a crash leaves the old file whole)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(dumps(baseline.to_dict()) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def dumps(value: Any, indent: int = 0) -> str:
    """JSON, indented, with every list of numbers or strings on one line."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {dumps(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [inner + dumps(v, indent + 2) for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(value)

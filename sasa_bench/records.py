"""Typed, versioned result records with their environment; JSONL in and out.

Every measurement (benchmark, training, evaluation) is one `Record`, appended to a JSONL file
as soon as it exists (flushed and fsynced, so a crash loses nothing written before it). Records
of every kind share the identifying fields (`kind`, `model`, `cost`, `env`), so reports can join
a throughput record with an accuracy record of the same model.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sasa_bench import __version__
from sasa_bench.errors import SasaBenchError

SCHEMA_VERSION = 1


@dataclass
class Record:
    kind: str  # "bench" | "train" | "eval" | ...
    model: str  # canonical model name (sasa_bench.models.registry)
    status: str = "ok"  # "ok" | "failed"
    error: str | None = None  # why, when failed
    config: dict[str, Any] = field(default_factory=dict)  # what was asked
    metrics: dict[str, Any] = field(default_factory=dict)  # what was measured
    cost: dict[str, Any] = field(default_factory=dict)  # analytic params, macs, flops
    env: dict[str, Any] = field(default_factory=dict)  # environment(), at measurement time
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat())
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Record:
        if "schema_version" not in raw:
            raise SasaBenchError("not a sasa_bench record (no schema_version)")
        version = raw["schema_version"]
        if version != SCHEMA_VERSION:
            raise SasaBenchError(
                f"record schema_version {version!r} is not {SCHEMA_VERSION} (written by another "
                "sasa_bench version)"
            )
        for name in ("kind", "model"):
            if not isinstance(raw.get(name), str):
                raise SasaBenchError(f"not a sasa_bench record (no {name!r} string)")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


def retried_batch(record: Record) -> int | None:
    """The batch measured when out-of-memory retries made it differ from the asked one."""
    asked, used = record.config.get("batch_size"), record.metrics.get("batch_size")
    return used if record.metrics.get("oom_batch_sizes") and used != asked else None


def append_record(path: str | os.PathLike[str], record: Record) -> None:
    """Append one record as a line, durably (flush + fsync). A line torn by an earlier crash is
    closed first, so it cannot swallow this record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        prefix = b""
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            prefix = b"" if handle.read(1) == b"\n" else b"\n"
        handle.write(prefix + record.to_json().encode() + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_records(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Record]:
    """Records of one or several JSONL files. Lines torn by a crash are skipped with a warning;
    a file in which no line is a record is an error."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in map(Path, paths):
        if not path.is_file():
            what = "a folder, not a results file" if path.is_dir() else "no results file"
            raise SasaBenchError(f"{what} {str(path)!r}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SasaBenchError(
                f"{path} is not a sasa_bench results file (binary: not UTF-8 JSONL text)"
            ) from None
        except OSError as error:
            raise SasaBenchError(f"cannot read results file {path}: {error.strerror}") from None
        numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        lines = [line for _, line in numbered]
        good = []
        for number, line in numbered:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(raw, dict):
                try:
                    good.append(Record.from_dict(raw))
                except SasaBenchError as error:
                    raise SasaBenchError(f"{path} line {number}: {error}") from None
        if lines and not good:
            raise SasaBenchError(f"{path} is not a sasa_bench results file (no JSON records)")
        if len(good) < len(lines):
            print(
                f"warning: {path}: skipped {len(lines) - len(good)} torn line(s)", file=sys.stderr
            )
        records += good
    return records


def to_dataframe(records: Iterable[Record]):
    """One row per record; config, metrics, cost and env flattened with dotted column names."""
    import pandas as pd

    return pd.json_normalize([dataclasses.asdict(r) for r in records])


@functools.cache
def _static_environment() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "sasa_bench": __version__,
        "git_sha": _git_sha(),
    }


def environment(device: str | None = None) -> dict[str, Any]:
    """Where a measurement ran: host, CPU, GPU name and count, driver, CUDA/cuDNN/torch, git."""
    env = dict(_static_environment())
    env["device"] = device
    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    env["gpu_count"] = gpu_count
    env["gpu"] = None
    env["driver"] = None
    if gpu_count:
        index = 0
        if device and device.startswith("cuda"):
            index = torch.device(device).index or 0
        env["gpu"] = torch.cuda.get_device_name(index)
        env["gpu_uuid"] = _gpu_uuid(index)
        env["driver"] = _nvidia_driver()
    slurm = slurm_environment()
    if slurm:
        env["slurm"] = slurm
    return env


def slurm_environment() -> dict[str, str]:
    """The Slurm job this process runs in (empty outside Slurm): ids, node, restarts. `job` is
    submitit's name of it: ARRAYJOB_INDEX for a task of an array, else the job id."""
    names = {
        "job_id": "SLURM_JOB_ID",
        "array_job_id": "SLURM_ARRAY_JOB_ID",
        "array_task_id": "SLURM_ARRAY_TASK_ID",
        "node": "SLURMD_NODENAME",
        "cluster": "SLURM_CLUSTER_NAME",
        "partition": "SLURM_JOB_PARTITION",
        "procid": "SLURM_PROCID",
        "restarts": "SLURM_RESTART_COUNT",
    }
    found = {key: os.environ[var] for key, var in names.items() if os.environ.get(var)}
    if "job_id" in found:
        array = "array_job_id" in found and "array_task_id" in found
        found["job"] = (
            f"{found['array_job_id']}_{found['array_task_id']}" if array else found["job_id"]
        )
    return found


def _gpu_uuid(index: int) -> str | None:
    """The GPU's UUID (as nvidia-smi prints it), telling apart two cards of one model."""
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
    except (AttributeError, RuntimeError):
        return None
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_sha() -> str | None:
    """The commit of this sasa_bench checkout (with '-dirty' for local changes), if any."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def _nvidia_driver() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            version = pynvml.nvmlSystemGetDriverVersion()
        finally:
            pynvml.nvmlShutdown()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # NVML missing or unusable: the driver is simply unknown
        return None

"""A sweep of measurements, each in its own subprocess, each record appended as soon as it exists.

Isolation (timm's bulk_runner): a crash, a hang or a leak in one measurement cannot poison the
others. The parent starts `python -m sasa_bench.measure.sweep RESULT` per measurement, with the
BenchConfig as JSON on stdin. The worker first writes a placeholder failed Record (with its
environment and cost) to RESULT, then measures and replaces it with the real one. If the worker
dies (segfault, abort, killed for memory) or overruns the per-measurement timeout, the parent
keeps the placeholder, says what happened in `error` and goes on with the next measurement.

With several GPUs (`devices=[0, 1, ...]`), one worker runs on each at a time; each sees only
its GPU (CUDA_VISIBLE_DEVICES=N, so it measures on cuda:0; `env.cuda_visible_devices` names
the physical one). The parent never touches CUDA itself, so it holds no memory on any GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from sasa_bench.measure.model import BenchConfig, bench_environment, measure, placement_reason
from sasa_bench.models.resnet import model_cost
from sasa_bench.models.thirdparty import ThirdPartySpec
from sasa_bench.records import Record, append_record

WORKER = (sys.executable, "-m", "sasa_bench.measure.sweep")
DEFAULT_TIMEOUT_S = 1800.0
STDERR_TAIL_LINES = 8
_LIVE: set[subprocess.Popen] = set()  # running workers, ended on Ctrl-C

Callback = Callable[[BenchConfig, Record], None]


def run_sweep(
    configs: Sequence[BenchConfig],
    *,
    out: str | os.PathLike[str] | None = None,
    isolate: bool = True,
    devices: Sequence[int] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_start: Callable[[BenchConfig], None] | None = None,
    on_record: Callback | None = None,
    worker: Sequence[str] = WORKER,
) -> list[Record]:
    """Measure every config; append each record to `out` as soon as it exists; return them all
    (in the order they finished). `devices` (GPU indices) spreads the configs over those GPUs,
    one measurement per GPU at a time; it implies isolation."""
    lock = threading.Lock()
    records: list[Record] = []

    def finish(config: BenchConfig, record: Record) -> None:
        with lock:
            if out is not None:
                append_record(out, record)
            records.append(record)
            if on_record:
                on_record(config, record)

    def run(config: BenchConfig, gpu: int | None) -> None:
        if on_start:
            on_start(config)
        if gpu is not None:
            one_gpu = replace(config, device="cuda:0")
            record = run_isolated(one_gpu, timeout_s=timeout_s, gpu=gpu, worker=worker)
        elif isolate:
            record = run_in_processes(config, timeout_s=timeout_s, worker=worker)
        else:
            record = measure(config)
        finish(config, record)

    if not devices:
        for config in configs:
            run(config, None)
        return records

    pending: queue.Queue[BenchConfig] = queue.Queue()
    for config in configs:
        pending.put(config)

    def drain(gpu: int) -> None:
        while True:
            try:
                config = pending.get_nowait()
            except queue.Empty:
                return
            run(config, gpu)

    threads = [threading.Thread(target=drain, args=(gpu,), daemon=True) for gpu in devices]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C: the workers are in their own sessions, end them
        while not pending.empty():
            pending.get_nowait()
        for process in list(_LIVE):
            _kill_group(process)
        raise
    return records


#: fresh worker processes per CPU measurement (each times one instance of the model)
CPU_PROCESSES = 3


def run_in_processes(
    config: BenchConfig, *, timeout_s: float = DEFAULT_TIMEOUT_S, worker: Sequence[str] = WORKER
) -> Record:
    """`run_isolated`, and on a CPU (unless `config.instances` is set) in `CPU_PROCESSES` fresh
    workers one after the other: the fastest is the record, reliable only where a second
    confirms it (the speed of one CPU process moves between processes by more than within one:
    `sasa_bench.measure.model.measure_once`)."""
    if config.instances is not None or torch.device(config.device).type != "cpu":
        return run_isolated(config, timeout_s=timeout_s, worker=worker)
    one = replace(config, instances=1)
    runs = [run_isolated(one, timeout_s=timeout_s, worker=worker) for _ in range(CPU_PROCESSES)]
    return fastest_process(config, runs)


def fastest_process(config: BenchConfig, runs: list[Record]) -> Record:
    """The fastest ok record of `runs` (the config asked, the other medians beside it)."""
    ok = [run for run in runs if run.status == "ok"]
    if not ok:
        return runs[-1]
    best = min(ok, key=lambda run: run.metrics.get("median_ms", float("inf")))
    medians = [run.metrics["median_ms"] for run in ok if "median_ms" in run.metrics]
    best.config = config.to_dict()
    best.metrics |= {"processes": len(runs), "process_medians_ms": medians}
    notes = list(best.metrics.get("notes", []))
    failed = [run for run in runs if run.status != "ok"]
    if failed:
        notes.append(f"{len(failed)} of {len(runs)} processes failed: {failed[0].error}")
    reason = placement_reason(medians, "processes")
    if reason:
        best.metrics["reliable"] = False
        best.metrics["unreliable_reasons"] = [*best.metrics.get("unreliable_reasons", []), reason]
        notes.append(reason)
    best.metrics["notes"] = notes
    return best


def run_isolated(
    config: BenchConfig,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    gpu: int | None = None,
    worker: Sequence[str] = WORKER,
) -> Record:
    """One measurement in a fresh worker process; a crash or a timeout is a failed Record."""
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    with tempfile.TemporaryDirectory(prefix="sasa-bench-") as tmp:
        result = Path(tmp) / "record.json"
        stderr_path = Path(tmp) / "stderr.txt"
        with stderr_path.open("w+b") as stderr:
            process = subprocess.Popen(
                [*worker, str(result)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                start_new_session=True,  # its own process group: a timeout kills all of it
            )
            _LIVE.add(process)
            problem = None
            try:
                process.communicate(json.dumps(config.to_dict()).encode(), timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                problem = f"timed out after {timeout_s:g} s (per-measurement timeout)"
            except BaseException:  # Ctrl-C in the parent: take the worker down too
                _kill_group(process)
                raise
            finally:
                _LIVE.discard(process)
        if problem is None and process.returncode != 0:
            problem = f"worker exited with {_describe_exit(process.returncode)}"
        record = _read_record(result)
        if problem is None and record is not None:
            return record
        tail = _tail(stderr_path)
        if problem is None:
            problem = "worker wrote no record"
        if record is None:
            record = placeholder(config, note="the worker died before reporting its environment")
        record.status = "failed"
        record.error = problem + (f"; stderr: {tail}" if tail else "")
        return record


def placeholder(
    config: BenchConfig, error: str = "the measurement did not finish", *, note: str | None = None
) -> Record:
    """The failed record a measurement leaves if it never finishes (`error`: why)."""
    env = {"device": config.device}
    if note:
        env["note"] = note
    return Record(
        "bench",
        config.named.name,
        status="failed",
        error=error,
        config=config.to_dict(),
        # a third-party model's cost is traced inside the measurement, which did not finish
        cost={} if isinstance(config.spec, ThirdPartySpec) else model_cost(config.spec).totals(),
        env=env,
        metrics={"batch_size": None},
    )


def _read_record(path: Path) -> Record | None:
    try:
        return Record.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def _kill_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _tail(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in lines[-STDERR_TAIL_LINES:])


def _write(path: Path, record: Record) -> None:
    """Replace `path` atomically, so the parent never reads half a record."""
    partial = path.with_suffix(".partial")
    partial.write_text(record.to_json())
    partial.replace(path)


def worker_main(argv: Sequence[str] | None = None) -> int:
    """`python -m sasa_bench.measure.sweep RESULT`: measure the BenchConfig on stdin into RESULT."""
    argv = sys.argv[1:] if argv is None else argv
    result = Path(argv[0])
    config = BenchConfig.from_dict(json.loads(sys.stdin.read()))
    started = placeholder(config)
    started.env = bench_environment(config.device, config.runtime)
    _write(result, started)
    _write(result, measure(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(worker_main())

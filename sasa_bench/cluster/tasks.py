"""A benchmark sweep on Slurm: one array task per configuration.

A task runs what the local sweep runs for one configuration (`run_in_processes`: its fresh
worker processes and per-measurement timeout), so a measurement on a node is made as one on
this machine is. (A report's items go as tasks from `sasa_bench.report.build`, a training as
one job from `sasa_bench.cli.train`.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sasa_bench.cluster.slurm import SlurmOptions, Task, run_tasks, task_key
from sasa_bench.measure.model import BenchConfig
from sasa_bench.measure.sweep import WORKER, placeholder, run_in_processes
from sasa_bench.records import Record, append_record


def measure_bench(config: dict[str, Any], timeout_s: float, worker: Sequence[str] | None) -> Record:
    """On the node: one configuration, measured as the local sweep measures it."""
    return run_in_processes(
        BenchConfig.from_dict(config), timeout_s=timeout_s, worker=tuple(worker or WORKER)
    )


def bench_task(config: BenchConfig, timeout_s: float, worker: Sequence[str] | None = None) -> Task:
    payload = config.to_dict()
    args = (payload, timeout_s, worker)
    return Task(task_key(["bench", payload]), measure_bench, args, partial(placeholder, config))


def run_bench_sweep(
    configs: Sequence[BenchConfig],
    options: SlurmOptions,
    *,
    out: str | os.PathLike[str],
    timeout_s: float,
    worker: Sequence[str] | None = None,
    on_submitted=None,
    on_record: Callable[[BenchConfig, Record], None] | None = None,
) -> list[Record]:
    """`sasa_bench.measure.sweep.run_sweep` on Slurm: one array task per configuration, each
    record appended to `out` as soon as its task has ended."""
    by_key = {}
    tasks = []
    for config in configs:
        task = bench_task(config, timeout_s, worker)
        by_key[task.key] = config
        tasks.append(task)

    def landed(task: Task, record: Record) -> None:
        append_record(out, record)
        if on_record:
            on_record(by_key[task.key], record)

    return run_tasks(tasks, options, on_submitted=on_submitted, on_record=landed)

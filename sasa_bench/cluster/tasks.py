"""What runs on a Slurm node, and the Tasks that send it there.

A bench task runs what the local sweep runs for one configuration (`run_in_processes`: its
fresh worker processes and per-measurement timeout), so a measurement on a node is made as one
on this machine is. A report task runs one missing item of a report. A training runs
`sasa-bench train` in every task of one job (one task per GPU, or per process on CPUs), each
rank taking its place in the torch.distributed world from Slurm's variables; a requeued job
(pre-emption, or a time limit with requeues left) resumes from the run's last checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
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
    def failed(reason: str) -> Record:
        record = placeholder(config)
        record.error = reason
        return record

    payload = config.to_dict()
    return Task(task_key(["bench", payload]), measure_bench, (payload, timeout_s, worker), failed)


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


# -- training ------------------------------------------------------------------------------


class TrainTask:
    """`sasa-bench train ARGV` as one rank of a Slurm job (ARGV as the user gave it, --executor
    slurm included: the rank trains in its own process). Pickled by submitit; `checkpoint`
    makes submitit requeue the job at its time limit as at a pre-emption, and a requeued rank
    resumes from OUT's last checkpoint."""

    def __init__(self, argv: Sequence[str], out: Path) -> None:
        self.argv = list(argv)
        self.out = Path(out)

    def __call__(self) -> list[Record]:
        import submitit

        from sasa_bench.cli import build_parser
        from sasa_bench.cli.train import train_runs

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        args = build_parser("train").parse_args(self.argv)
        args.executor = "local"
        requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
        if requeued and any(self.out.glob("**/checkpoint.pt")):  # go on, never start over
            args.resume, args.overwrite = True, False
        return train_runs(args)

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(self)


def training_parameters(args, options: SlurmOptions) -> dict[str, Any]:
    """sbatch parameters of one training job: --nodes x --tasks-per-node ranks."""
    tasks = args.tasks_per_node or max(args.gpus_per_node, 1)
    params = options.parameters() | {"nodes": args.nodes, "ntasks_per_node": tasks}
    params.pop("array_parallelism")
    params.pop("gpus_per_task", None)
    if args.gpus_per_node:
        params["gpus_per_node"] = args.gpus_per_node
    return params


def run_training(args, options: SlurmOptions, *, out: Path, echo: Callable[[str], None]):
    """`sasa-bench train` as one Slurm job: submitted (or, after an interrupted wait, followed
    again), rank 0's log echoed as it grows; the Records of rank 0 (failed ones with Slurm's
    reason when the job ended without them)."""
    from sasa_bench.train.trainer import check_folder

    seeds = args.seeds or (args.seed,)
    folders = [out / f"seed-{seed}" for seed in seeds] if args.seeds else [out]
    for folder in folders:
        resume = args.resume and (not args.seeds or (folder / "checkpoint.pt").exists())
        check_folder(folder / "checkpoint.pt", resume=resume, overwrite=args.overwrite)

    def failed(reason: str) -> list[Record]:
        hint = f"; {out} keeps the last finished epoch's checkpoint: add --resume to go on"
        return [Record("train", args.model, status="failed", error=reason + hint)]

    task = Task(task_key(["train", args.argv]), TrainTask(args.argv, out), (), failed)
    shown = [0]

    def follow(jobs: dict[str, Any]) -> None:
        for job in jobs.values():
            shown[0] = echo_new_lines(job, shown[0], echo)

    def submitted(what) -> None:
        for job_id in what.submitted:
            echo(f"submitted Slurm job {job_id}: {args.nodes} node(s) x "
                 f"{training_parameters(args, options)['ntasks_per_node']} rank(s); "
                 f"logs in {options.folder}")  # fmt: skip
        for job_id in what.followed:
            echo(f"following Slurm job {job_id}, submitted before")

    (records,) = run_tasks(
        [task],
        options,
        parameters=training_parameters(args, options),
        on_submitted=submitted,
        on_poll=follow,
    )
    for record in records:
        if record.status != "ok":
            echo(f"train: failed: {record.error}")
    return records


def echo_new_lines(job, shown: int, echo: Callable[[str], None]) -> int:
    """Echo the lines of rank 0's log past the first `shown`; the count shown now."""
    try:
        lines = job.paths.stdout.read_text(errors="replace").splitlines()
    except OSError:
        return shown
    for line in lines[shown:]:
        echo(line)
    return len(lines)

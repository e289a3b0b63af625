"""Submit work to Slurm through submitit, follow it, and collect one Record per task.

A `Task` is one unit of a sweep: a function (importable, run on a node by submitit) that
returns a Record (a training: its list of Records, one per seed), a stable key that tells a
rerun which tasks are done, and the failed Record it leaves if it never returns. `run_tasks`
submits the tasks as one job array and returns the Records in the order they finish, handing
each to `on_record` the moment it is in.

The folder (on a file system the nodes share) holds submitit's pickles and logs and
`jobs.json`: the tasks submitted and not yet collected, by key. A rerun after Ctrl-C or a crash
of the submitting process follows those jobs again instead of submitting them twice; a task
whose job failed, was cancelled, pre-empted past its requeues or timed out comes back as its
failed Record, with Slurm's state and the tail of its log as the reason. Ended jobs are read
with `sacct`, which needs Slurm's accounting (slurmdbd): without it a task that dies without a
result would look as if it ran forever, so `require_slurm` refuses such a cluster up front.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sasa_bench.errors import SasaBenchError
from sasa_bench.records import Record

INSTALL_HINT = "pip install 'sasa-bench[cluster]'"
LOG_TAIL_LINES = 6
#: seconds an ended job's result file may take to appear (submitit's own wait)
RESULT_WAIT_S = 15.0


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how tasks run (`sbatch` options, by submitit's names)."""

    folder: Path  # submitit's pickles and logs, jobs.json; shared with the nodes
    partition: str | None = None
    time_min: int = 60  # per task
    cpus_per_task: int = 1
    gpus_per_task: int = 0
    array_parallelism: int = 256
    extra: tuple[tuple[str, str], ...] = ()  # further `#SBATCH --KEY=VALUE` lines
    poll_s: float = 1.0  # seconds between two looks at the running jobs

    def parameters(self) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters for one task of an array."""
        params: dict[str, Any] = {
            "time": self.time_min,
            "cpus_per_task": self.cpus_per_task,
            "array_parallelism": self.array_parallelism,
            "job_name": "sasa-bench",
        }
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_task:
            params["gpus_per_task"] = self.gpus_per_task
        if self.extra:
            params["additional_parameters"] = dict(self.extra)
        return params


@dataclass(frozen=True)
class Task:
    key: str  # identity across reruns (e.g. the configuration as sorted JSON)
    function: Callable[..., Any]  # module-level: submitit pickles it by reference
    args: tuple
    failed: Callable[[str], Any] = field(repr=False)  # what a task that never returned leaves


def require_slurm() -> None:
    """SasaBenchError unless submitit is installed and a Slurm with accounting answers."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SasaBenchError(f"--executor slurm needs submitit: {INSTALL_HINT}") from None
    missing = [name for name in ("sbatch", "sacct", "squeue", "scancel") if not shutil.which(name)]
    if missing:
        raise SasaBenchError(
            f"--executor slurm: no Slurm here ({', '.join(missing)} not on PATH); run it on a "
            "machine that submits to your cluster, or use --executor local"
        )
    try:
        answer = subprocess.run(
            ["sacct", "-n", "-X", "-o", "JobID", "-S", "now"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        raise SasaBenchError("--executor slurm: sacct did not answer in 30 s") from None
    if answer.returncode != 0:
        detail = (answer.stderr or answer.stdout).strip().splitlines()
        raise SasaBenchError(
            "--executor slurm needs Slurm's accounting (slurmdbd), which ends the jobs that die "
            f"without a result: sacct says {detail[-1] if detail else f'exit {answer.returncode}'}"
        )


class JobBook:
    """`jobs.json`: the submitted tasks not yet collected, key -> Slurm job id (rewritten
    atomically after every change, so a crash leaves the last good version)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jobs: dict[str, str] = {}
        if path.is_file():
            try:
                self.jobs = dict(json.loads(path.read_text()))
            except (ValueError, TypeError):
                raise SasaBenchError(f"{path} is not a job list (JSON object); remove it") from None

    def save(self) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.jobs, indent=1, sort_keys=True))
        partial.replace(self.path)


@dataclass
class Submitted:
    """What `run_tasks` found and did before it waits: for the caller's progress line."""

    submitted: list[str]  # job ids of new tasks
    followed: list[str]  # job ids of tasks an earlier run submitted


def run_tasks(
    tasks: Sequence[Task],
    options: SlurmOptions,
    *,
    parameters: dict[str, Any] | None = None,
    on_submitted: Callable[[Submitted], None] | None = None,
    on_record: Callable[[Task, Record], None] | None = None,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
) -> list[Record]:
    """Submit what is not running yet (one job array; `parameters` replace the options' sbatch
    parameters), wait for every task; return the Records in the order they ended. `on_poll`
    sees the jobs not yet collected (submitit Jobs by key) at every look. Ctrl-C stops the waiting,
    not the jobs: a rerun follows them."""
    import submitit

    options.folder.mkdir(parents=True, exist_ok=True)
    book = JobBook(options.folder / "jobs.json")
    by_key = {task.key: task for task in tasks}
    jobs = {
        key: submitit.SlurmJob(folder=options.folder, job_id=job_id)
        for key, job_id in book.jobs.items()
        if key in by_key
    }
    followed = [job.job_id for job in jobs.values()]
    new = [task for task in tasks if task.key not in jobs]
    if new:
        submitted = submit(new, options.folder, parameters or options.parameters())
        for task, job in zip(new, submitted, strict=True):
            jobs[task.key] = job
            book.jobs[task.key] = job.job_id
        book.save()
    if on_submitted:
        on_submitted(Submitted([jobs[t.key].job_id for t in new], followed))
    records = []
    ended: dict[str, float] = {}  # when a job was first seen ended without its result file
    while jobs:
        submitit.SlurmJob.watcher.update()  # one sacct call for all the jobs
        if on_poll:
            on_poll(jobs)
        for key, job in list(jobs.items()):
            if not job.done():
                continue
            if not result_shown(job, ended.setdefault(key, time.monotonic())):
                continue
            task = by_key[key]
            record = collect(task, job)
            records.append(record)
            if on_record:
                on_record(task, record)
            del jobs[key]
            book.jobs.pop(key, None)
            book.save()
        if jobs:
            time.sleep(options.poll_s)
    return records


def submit(tasks: Sequence[Task], folder: Path, parameters: dict[str, Any]) -> list:
    """The tasks as one job array (one job for one task); sbatch's refusal (an unknown
    partition or option, a limit) is the user's error, in sbatch's words."""
    import submitit

    executor = submitit.SlurmExecutor(folder=folder)
    executor.update_parameters(**parameters)
    try:  # submitit prints sbatch's complaint too: it is in the error, said once
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():
            return [executor.submit(task.function, *task.args) for task in tasks]
    except submitit.core.utils.FailedJobError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise SasaBenchError(f"sbatch refused the job: {' '.join(lines)}") from None


def result_shown(job, ended: float) -> bool:
    """Whether an ended job's results can be read now: its result files are there, or they
    did not show within RESULT_WAIT_S of `ended` (when it was first seen ended). A shared file
    system may show a result late; waiting here, not in submitit (15 s per job, one after the
    other), lets the other jobs be collected meanwhile."""
    task_jobs = list(job._sub_jobs) or [job]
    shown = all(task_job.paths.result_pickle.exists() for task_job in task_jobs)
    if not shown and time.monotonic() - ended < RESULT_WAIT_S:
        return False
    for task_job in task_jobs:
        task_job._results_timeout_s = 0  # waited here
    return True


def collect(task: Task, job) -> Any:
    """The task's Record(s), or its failed Record(s) with the reason from Slurm and the log.
    A task that returned failed Records after Slurm ended its job (a cancel's SIGTERM reached
    its measurement first) has Slurm's state put before their error."""
    import submitit

    try:
        result = job.results()[0]  # task 0's (a training's rank 0)
    except submitit.core.utils.FailedJobError as error:  # the function raised on the node
        lines = [line for line in str(error).strip().splitlines() if line.strip()]
        result = task.failed(f"Slurm job {job.job_id} raised: {lines[-1] if lines else error}")
    except submitit.core.utils.UncompletedJobError:  # the job ended without a result
        tail = log_tail(job)
        reason = f"Slurm job {job.job_id} ended {job.state} without a result"
        result = task.failed(reason + (f"; log: {tail}" if tail else ""))
    failed = [record for record in as_list(result) if record.status != "ok"]
    if failed:
        info = job.get_info()  # sacct, now
        state = info.get("State", job.state)
        where = job_ids(job.job_id) | {"state": state}
        if info.get("NodeList") not in (None, "", "None assigned"):
            where["node"] = info["NodeList"]
        for record in failed:
            if not (record.error or "").startswith("Slurm job") and not state.startswith(FINE):
                record.error = f"Slurm job {job.job_id} ended {state}: {record.error}"
            record.env.setdefault("slurm", where)
    return result


#: job states under which a task's own failure is all there is to say
FINE = ("COMPLETED", "RUNNING", "COMPLETING")


def as_list(result: Any) -> list[Record]:
    """A task's Record, or a training's Records, as a list."""
    return result if isinstance(result, list) else [result]


def job_ids(job_id: str) -> dict[str, str]:
    """The ids `sasa_bench.records.slurm_environment` gives a submitit job id: "123", or
    "123_4" in an array."""
    array, sep, index = job_id.partition("_")
    return {"job": job_id} | ({"array_job_id": array, "array_task_id": index} if sep else {})


def log_tail(job) -> str:
    """The last lines of the task's log (submitit's stderr file of task 0)."""
    try:
        text = job.paths.stderr.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-LOG_TAIL_LINES:])


def log_follower(echo: Callable[[str], None]) -> Callable[[dict[str, Any]], None]:
    """An `on_poll` that echoes the new lines of each job's task-0 log (a training's rank 0)."""
    shown: dict[str, int] = {}

    def follow(jobs: dict[str, Any]) -> None:
        for job in jobs.values():
            try:
                lines = job.paths.stdout.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines[shown.get(job.job_id, 0) :]:
                echo(line)
            shown[job.job_id] = len(lines)

    return follow


def task_key(payload: Any) -> str:
    """A stable key for a JSON-able description of a task."""
    return json.dumps(payload, sort_keys=True, default=str)

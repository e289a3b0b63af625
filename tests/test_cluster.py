"""--executor slurm against a real one-node Slurm (slurmctld, slurmd, slurmdbd with MariaDB),
brought up by the project's own tools/slurm_test_cluster.sh; and the refusals without one.

The cluster tests skip where the cluster cannot be brought up (not root, no Debian packages),
unless SASA_BENCH_REQUIRE_SLURM=1 (as .ci/run sets), where that is a failure.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sasa_bench.cli import main
from sasa_bench.cluster.slurm import JobBook, SlurmOptions, run_tasks
from sasa_bench.cluster.tasks import bench_task, run_bench_sweep
from sasa_bench.measure.model import BenchConfig
from sasa_bench.records import Record, load_records
from sasa_bench.report.build import build_report

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "slurm_test_cluster.sh"
WORKER = (sys.executable, str(ROOT / "tests" / "cluster" / "misbehaving_worker.py"))
QUICK = ["--resolution", "32", "--instances", "1", "--warmup", "0", "--iters", "1"]
QUICK += ["--max-time", "0"]


@pytest.fixture(scope="session")
def slurm():
    """The test cluster, up (the script is idempotent: a second `up` takes about 2 s)."""
    try:
        result = subprocess.run(
            ["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=900
        )
        problem = None if result.returncode == 0 else (result.stderr or result.stdout).strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        problem = str(error)
    if problem:
        message = f"no test Slurm cluster: {problem.splitlines()[-1] if problem else '?'}"
        if os.environ.get("SASA_BENCH_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)


def cli(*argv, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sasa_bench", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def submission_scripts(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*_submission.sh"))


def test_a_sweep_lands_one_record_per_task_and_a_rerun_submits_nothing(slurm, tmp_path):
    out = tmp_path / "sweep.jsonl"
    argv = ["bench", "resnet26", "sasa26", "--batch-sizes", "1,2", *QUICK]
    argv += ["--executor", "slurm", "--out", str(out)]
    first = cli(*argv)
    assert first.returncode == 0, first.stderr
    records = load_records(out)
    assert len(records) == 4 and all(r.status == "ok" for r in records)
    slurm_ids = [r.env["slurm"] for r in records]
    assert len({ids["array_job_id"] for ids in slurm_ids}) == 1  # one job array
    assert sorted(int(ids["array_task_id"]) for ids in slurm_ids) == [0, 1, 2, 3]
    assert all(ids["node"] and ids["job"] == f"{ids['array_job_id']}_{ids['array_task_id']}"
               for ids in slurm_ids)  # fmt: skip
    assert {(r.model.partition(":")[0], r.config["batch_size"]) for r in records} == {
        ("resnet26", 1), ("resnet26", 2), ("sasa26", 1), ("sasa26", 2)
    }  # fmt: skip
    folder = tmp_path / "sweep.slurm"
    scripts = submission_scripts(folder)
    assert json.loads((folder / "jobs.json").read_text()) == {}  # all collected

    again = cli(*argv)
    assert again.returncode == 0, again.stderr
    assert "4 of 4 measurements are in" in again.stderr
    assert submission_scripts(folder) == scripts  # nothing submitted
    assert len(load_records(out)) == 4

    by_node = cli("compare", str(out), "--by", "host")
    assert by_node.returncode == 0, by_node.stderr
    assert records[0].env["host"] in by_node.stdout


def test_a_crashed_and_a_cancelled_task_are_failed_rows_with_slurm_reasons(slurm, tmp_path):
    configs = [
        BenchConfig("resnet26:resolution=32", batch_size=batch, instances=1, warmup=0, iters=1)
        for batch in (1, 2, 3)
    ]
    options = SlurmOptions(folder=tmp_path / "slurm", time_min=5)
    out = tmp_path / "sweep.jsonl"
    started = time.monotonic()
    records = run_bench_sweep(configs, options, out=out, timeout_s=300, worker=WORKER)
    assert time.monotonic() - started < 120  # the sweep ends: nothing waits on a dead task
    by_batch = {r.config["batch_size"]: r for r in load_records(out)}
    assert len(records) == 3 and sorted(by_batch) == [1, 2, 3]
    assert by_batch[1].status == "ok" and by_batch[1].env["slurm"]["node"]
    crashed, cancelled = by_batch[2], by_batch[3]
    assert crashed.status == "failed" and "FAILED" in crashed.error, crashed.error
    assert cancelled.status == "failed" and "CANCELLED" in cancelled.error, cancelled.error
    for record in (crashed, cancelled):
        assert record.error.startswith(f"Slurm job {record.env['slurm']['job']} ended ")
        assert record.env["slurm"]["node"]  # where it died, from sacct


def test_a_rerun_follows_the_jobs_an_interrupted_run_submitted(slurm, tmp_path):
    options = SlurmOptions(folder=tmp_path / "slurm", time_min=5)
    config = BenchConfig("resnet26:resolution=32", batch_size=4, instances=1)
    task = bench_task(config, 300, WORKER)  # its worker takes 3 s
    seen = []

    def interrupt(jobs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tasks([task], options, on_submitted=seen.append, on_poll=interrupt)
    (job_id,) = seen[0].submitted
    assert JobBook(options.folder / "jobs.json").jobs == {task.key: job_id}

    records = run_tasks([task], options, on_submitted=seen.append)
    assert seen[1].submitted == [] and seen[1].followed == [job_id]
    assert [(r.status, r.config) for r in records] == [("ok", config.to_dict())]
    assert JobBook(options.folder / "jobs.json").jobs == {}


# 4 epochs of ~2 s: a cancel after the first leaves far more than the test cluster's KillWait
# (2 s, the time a cancelled job's ranks have before SIGKILL) to run
TRAIN = ["train", "sasa26", "--width", "0.25", "--subset", "128", "--epochs", "4"]
TRAIN += ["--device", "cpu", "--executor", "slurm", "--tasks-per-node", "2"]


def final_record(out: Path) -> Record:
    (record,) = [r for r in load_records(out / "results.jsonl") if r.kind == "train"]
    return record


def submitted_job(log: Path, timeout_s: float = 60) -> str:
    """The job id a background `train --executor slurm` prints first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if line.startswith("submitted Slurm job "):
                return line.split()[3].rstrip(":")
        time.sleep(0.5)
    raise AssertionError(f"no job submitted: {log.read_text()}")


def wait_for_epoch(out: Path, epoch: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    epochs = out / "epochs.jsonl"
    while time.monotonic() < deadline:
        if epochs.is_file() and len(epochs.read_text().splitlines()) >= epoch:
            return
        time.sleep(0.1)
    raise AssertionError(f"epoch {epoch} did not end in {timeout_s} s")


@pytest.fixture(scope="module")
def uninterrupted(slurm, tmp_path_factory):
    """A 2-rank DDP training through Slurm that nothing interrupts: the weights to match."""
    out = tmp_path_factory.mktemp("train") / "run"
    result = cli(*TRAIN, "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    return result, final_record(out)


def test_ddp_training_through_slurm_agrees_on_both_ranks(uninterrupted):
    result, record = uninterrupted
    assert "1 node(s) x 2 rank(s)" in result.stdout
    assert "2 process(es) on cpu" in result.stdout  # rank 0's log, echoed
    assert record.status == "ok" and record.metrics["ranks_agree"]
    assert len(record.metrics["rank_digests"]) == 2
    assert record.env["slurm"]["node"] and record.env["slurm"]["job"]


def start_training(out: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sasa_bench", *TRAIN, "--out", str(out), *extra],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_a_preempted_training_is_requeued_and_resumes_to_the_same_weights(uninterrupted, tmp_path):
    out, log = tmp_path / "run", tmp_path / "log.txt"
    process = start_training(out, log)
    job = submitted_job(log)
    wait_for_epoch(out, 1)
    # what Slurm sends at a pre-emption: SIGTERM, then submitit's signal (sent at once, so the
    # training cannot end first)
    subprocess.run(["scancel", job, "--signal", "SIGTERM"], check=True)
    subprocess.run(["scancel", job, "--signal", "USR2"], check=True)
    process.send_signal(signal.SIGINT)  # Ctrl-C stops the waiting, not the job
    assert process.wait(timeout=60) == 130
    assert "the Slurm job goes on; the same command again follows it" in log.read_text()
    again = cli(*TRAIN, "--out", str(out))
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"following Slurm job {job}, submitted before" in again.stdout
    assert "resumed" in again.stdout, again.stdout
    record = final_record(out)
    assert record.metrics["ranks_agree"]
    assert record.metrics["rank_digests"] == uninterrupted[1].metrics["rank_digests"]
    assert int(record.env["slurm"]["restarts"]) >= 1


def test_a_cancelled_training_resumes_with_resume(uninterrupted, tmp_path):
    out, log = tmp_path / "run", tmp_path / "log.txt"
    process = start_training(out, log)
    job = submitted_job(log)
    wait_for_epoch(out, 1)
    subprocess.run(["scancel", job], check=True)
    assert process.wait(timeout=300) == 1
    text = log.read_text()
    assert f"train: failed: Slurm job {job} ended CANCELLED" in text, text
    assert "add --resume to go on" in text

    again = cli(*TRAIN, "--out", str(out), "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed" in again.stdout
    record = final_record(out)
    assert record.metrics["rank_digests"] == uninterrupted[1].metrics["rank_digests"]


TINY_STUDY = '''"""ResNet-26 at width 0.125: one benchmark, one epoch of training."""
from sasa_bench.report.study import Bench, Study, Train

def study(smoke):
    return Study(name="tiny", title="Tiny", models=("resnet26:width=0.125",),
                 bench=Bench("resolution=32", batch_size=2, warmup=1, iters=2, max_time_s=0.5),
                 train=Train(("resnet26:width=0.125",), overrides="", epochs=1, seeds=(0,)))
'''


def test_a_report_measures_its_missing_items_as_slurm_tasks(slurm, tmp_path):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    (experiments / "tiny.py").write_text(TINY_STUDY)
    out = tmp_path / "report"
    options = SlurmOptions(folder=out / "slurm", time_min=5)
    build_report(["tiny"], smoke=True, out=out, experiments=experiments, slurm=options)
    records = load_records(out / "records.jsonl")
    assert sorted(r.kind for r in records) == ["bench", "bench", "train"]  # trained: benched too
    assert all(r.status == "ok" and r.env["slurm"]["job"] for r in records)
    assert len({r.env["slurm"]["array_job_id"] for r in records}) == 1  # one job array
    assert (out / "runs").is_dir()  # the training's run folder, written from the node
    assert "resnet26" in (out / "report.md").read_text() and (out / "index.html").is_file()
    submitted = submission_scripts(options.folder)
    build_report(["tiny"], smoke=True, out=out, experiments=experiments, slurm=options)
    assert submission_scripts(options.folder) == submitted  # nothing missing, nothing submitted


# -- without a cluster ------------------------------------------------------------------------


def test_without_slurm_the_executor_says_so_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("shutil.which", lambda name: None)
    out = str(tmp_path / "x.jsonl")
    assert main(["bench", "resnet26", "--executor", "slurm", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no Slurm here (sbatch, sacct, squeue, scancel not on PATH)" in err


def test_without_submitit_the_executor_names_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    assert main(["train", "resnet26", "--executor", "slurm", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--executor slurm needs submitit: pip install 'sasa-bench[cluster]'")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "resnet26", "--slurm-partition", "gpu"], "--slurm-partition is a Slurm option"),
        (["train", "resnet26", "--nodes", "2"], "--nodes is a Slurm option"),
        (["bench", "resnet26", "--executor", "slurm"], "--executor slurm needs --out"),
        (
            ["bench", "resnet26", "--executor", "slurm", "--in-process", "--out", "x.jsonl"],
            "--in-process is for --executor local",
        ),
    ],
)
def test_slurm_flags_are_checked_before_any_work(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_bad_slurm_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "resnet26", "--slurm-option", "account"])
    assert exit_.value.code == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_a_used_run_folder_is_refused_before_a_job_is_submitted(slurm, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    assert main([*TRAIN, "--out", str(out)]) == 2
    assert "holds a run already: --resume continues it" in capsys.readouterr().err
    assert not (out / "slurm").exists()  # nothing submitted


def test_the_slurm_environment_names_the_array_task(monkeypatch):
    from sasa_bench.records import environment, slurm_environment

    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURMD_NODENAME"):
        monkeypatch.delenv(name, raising=False)
    assert slurm_environment() == {} and "slurm" not in environment("cpu")
    monkeypatch.setenv("SLURM_JOB_ID", "108")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "100")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "8")
    monkeypatch.setenv("SLURMD_NODENAME", "gpu-node-3")
    found = environment("cpu")["slurm"]
    assert found["job"] == "100_8" and found["job_id"] == "108" and found["node"] == "gpu-node-3"


def test_a_gpu_sweep_for_slurm_is_checked_without_a_gpu_here():
    from sasa_bench.cli import build_parser
    from sasa_bench.cli.bench import configs_from_args
    from sasa_bench.errors import SasaBenchError

    argv = ["bench", "resnet26", "--device", "cuda", "--out", "x.jsonl"]
    args = build_parser("bench").parse_args([*argv, "--executor", "slurm"])
    assert [c.device for c in configs_from_args(args)] == ["cuda"]
    if not __import__("torch").cuda.is_available():
        with pytest.raises(SasaBenchError, match="no GPU"):
            configs_from_args(build_parser("bench").parse_args(argv))


def test_a_job_sbatch_refuses_is_one_line_and_exit_2(slurm, tmp_path, capsys):
    out = str(tmp_path / "x.jsonl")
    assert main(["bench", "resnet26", "--executor", "slurm", "--slurm-partition", "nosuch",
                 "--out", out]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sasa-bench bench: error: sbatch refused the job: ")
    assert "invalid partition" in err[-1].lower() and len(err) <= 2  # (the progress line)

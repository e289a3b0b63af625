"""Ctrl-C as a terminal sends it (through a pty, to the foreground process group): one line,
exit code 130, every finished record kept, and the same command resumes without duplicates."""

import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _own_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is the pty (stdin), so
    that the pty's Ctrl-C signals its process group, as a shell's foreground job's."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def interrupt_when(argv: list[str], ready, timeout_s: float = 120.0) -> tuple[int, str]:
    """Run `sasa-bench ARGV` on a pty, press Ctrl-C once `ready()` holds; (exit code, output)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "sasa_bench", *argv], stdin=terminal, stdout=terminal,
        stderr=terminal, cwd=ROOT, preexec_fn=_own_terminal, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    os.close(terminal)
    output, deadline, sent = b"", time.monotonic() + timeout_s, False
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if not sent and ready():
                os.write(controller, b"\x03")  # the terminal's interrupt character
                sent = True
            if select.select([controller], [], [], 0.2)[0]:
                try:
                    output += os.read(controller, 65536)
                except OSError:
                    break
        process.wait(timeout=30)
        while select.select([controller], [], [], 0.1)[0]:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        os.close(controller)
    assert sent, "the command ended before it was interrupted"
    return process.returncode, output.decode(errors="replace")


def finished(path: Path, count: int = 1):
    return lambda: len(lines(path)) >= count


def check_interrupted(code: int, output: str) -> None:
    assert code == 130, output
    assert "Traceback" not in output, output
    # the progress bar's cursor codes, and the terminal's echo of the keystroke
    output = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output).replace("^C", "")
    (line,) = [line for line in output.splitlines() if "interrupted" in line]
    assert line.startswith("sasa-bench ") and "interrupted; " in line


def run(argv: list[str]) -> None:
    subprocess.run([sys.executable, "-m", "sasa_bench", *argv], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_in_bench_keeps_the_records_and_a_rerun_measures_only_the_rest(tmp_path):
    out = tmp_path / "bench.jsonl"
    argv = ["bench", "resnet26", "--width", "0.25", "--resolution", "32",
            "--batch-sizes", "1,2,3,4", "--warmup", "1", "--iters", "3", "--max-time", "0.5",
            "--out", str(out)]  # fmt: skip
    code, output = interrupt_when(argv, finished(out))
    check_interrupted(code, output)
    kept = lines(out)
    assert 1 <= len(kept) < 4 and all(r["status"] == "ok" for r in kept)
    run(argv)
    batches = [r["config"]["batch_size"] for r in lines(out)]
    assert sorted(batches) == [1, 2, 3, 4]  # each measured once, the kept ones not again
    assert lines(out)[: len(kept)] == kept


@pytest.mark.slow
def test_ctrl_c_in_report_keeps_the_records_and_a_rerun_resumes(tmp_path):
    folder = tmp_path / "report"
    argv = ["report", "table6", "--smoke", "--out", str(folder)]
    records = folder / "records.jsonl"
    code, output = interrupt_when(argv, finished(records))
    check_interrupted(code, output)
    kept = lines(records)
    assert kept and str(records) in output
    run(argv)
    after = lines(records)
    assert after[: len(kept)] == kept
    keys = [(r["kind"], json.dumps(r["config"], sort_keys=True)) for r in after]
    assert len(keys) == len(set(keys))  # nothing measured twice
    assert (folder / "report.md").is_file()


@pytest.mark.slow
def test_ctrl_c_in_train_keeps_the_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "resnet26", "--width", "0.0625", "--subset", "96", "--epochs", "12",
            "--batch-size", "16", "--out", str(out)]  # fmt: skip
    code, output = interrupt_when(argv, finished(out / "epochs.jsonl"))
    check_interrupted(code, output)
    assert "--resume" in output and (out / "checkpoint.pt").is_file()
    done = len(lines(out / "epochs.jsonl"))
    assert 1 <= done < 12
    run([*argv, "--resume"])
    epochs = [r["metrics"]["epoch"] for r in lines(out / "epochs.jsonl")]
    assert epochs == list(range(1, 13))  # each epoch once: the kept ones are not trained again

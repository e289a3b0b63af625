"""sasa_bench's numbers on an idle machine and beside busy processes, from one run.

    python3 tools/load_benchmark.py bench  [--busy 2] [--out DIR]   # about 1 minute on 2 cores
    python3 tools/load_benchmark.py report [--busy 2] [--out DIR]   # about an hour on 2 cores

`bench` runs `sasa-bench bench resnet26 sasa26 --resolution 64 --batch-sizes 2` (default
settings) idle, then with `--busy` processes spinning (`yes > /dev/null`, one core each), and
prints each model's median, IQR and timer side by side, the loaded/idle ratio of the medians,
and the sasa26/resnet26 ratio of each run. `report` runs the main job (`sasa-bench report`, into
a fresh folder each time, stdout to a log file) idle and loaded, and prints the two wall times
and their ratio, the longest stretch of the log without a progress line, and how far apart the
latencies of identical blocks are in each run's per-block tables.

"Idle" means no busy process of this script's; whatever else the machine runs is in both runs
(the script prints the load it saw before each). Sized for a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sasa_bench.measure.load import busy_cores  # noqa: E402

BENCH = ["bench", "resnet26", "sasa26", "--resolution", "64", "--batch-sizes", "2"]


@contextlib.contextmanager
def busy(count: int) -> Iterator[None]:
    """`count` processes spinning on a core each while the block runs."""
    spinners = [
        subprocess.Popen(["yes"], stdout=subprocess.DEVNULL, start_new_session=True)
        for _ in range(count)
    ]
    time.sleep(0.5)
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def sasa_bench(args: list[str], log: Path) -> float:
    """Run `sasa-bench ARGS` (output to `log`); its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "sasa_bench", *args], stdout=out, stderr=subprocess.STDOUT,
            env=env, check=True,
        )  # fmt: skip
    return time.perf_counter() - start


def load_line(label: str) -> str:
    cores = busy_cores(1.0)
    if cores is None:
        return label
    return f"{label}: {cores:.1f} of {os.cpu_count()} cores busy before the run"


def read_records(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["model"]: row for row in rows if row["kind"] == "bench"}


def run_bench(count: int, out: Path) -> None:
    runs = {}
    for label in ("idle", "loaded"):
        records = out / f"bench-{label}.jsonl"
        records.unlink(missing_ok=True)
        context = busy(count) if label == "loaded" else contextlib.nullcontext()
        with context:
            print(load_line(label), flush=True)
            seconds = sasa_bench([*BENCH, "--out", str(records)], out / f"bench-{label}.log")
        runs[label] = read_records(records)
        print(f"{label}: {seconds:.1f} s", flush=True)
    print(f"\nsasa-bench {' '.join(BENCH)}; busy processes: {count}")
    header = "model | idle median ms (IQR, n) | loaded median ms (IQR, n) | loaded/idle | timer"
    print(header)
    for model in runs["idle"]:
        cells = []
        for label in ("idle", "loaded"):
            m = runs[label][model]["metrics"]
            cells.append(f"{m['median_ms']:.2f} ({100 * m['spread']:.0f}%, {m['samples']})")
        ratio = (
            runs["loaded"][model]["metrics"]["median_ms"]
            / runs["idle"][model]["metrics"]["median_ms"]
        )
        m = runs["loaded"][model]["metrics"]
        contention = "; ".join(m["contention"]["reasons"]) or "none seen"
        print(f"{model} | {cells[0]} | {cells[1]} | {ratio:.3f} | {m['timer']}, {m['threads']} "
              f"thread(s); contention (loaded): {contention}")  # fmt: skip
    ratios = {}
    for label, records in runs.items():
        a, b = (
            records[f"{name}:resolution=64"]["metrics"]["median_ms"]
            for name in ("sasa26", "resnet26")
        )
        ratios[label] = a / b
        print(f"sasa26/resnet26 {label}: {ratios[label]:.3f}")
    print(f"ratio loaded/idle: {ratios['loaded'] / ratios['idle']:.3f}")


def block_spread(report: Path) -> list[tuple[str, float]]:
    """Per model: the largest over the smallest latency among blocks of one shape (the same
    params and FLOPs in the per-block table)."""
    out = []
    pieces = (report / "report.md").read_text().split("*")
    for caption, table in zip(pieces, pieces[1:], strict=False):
        match = re.match(r"(\S+): per block at", caption)
        if not match:
            continue
        groups: dict[tuple[str, str], list[float]] = {}
        for line in table.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) >= 6 and cells[0].startswith("stages."):
                latency = re.match(r"[\d.]+", cells[5])
                if latency:
                    groups.setdefault((cells[1], cells[2]), []).append(float(latency.group()))
        worst = [max(v) / min(v) for v in groups.values() if len(v) > 1 and min(v) > 0]
        if worst:
            out.append((match.group(1), max(worst)))
    return out


def longest_silence(log: Path) -> float:
    """The longest stretch in seconds between two consecutive progress lines of a report log."""
    stamps = [float(m.group(1)) for m in re.finditer(r"^\[ *([\d.]+) s\]", log.read_text(), re.M)]
    return max((b - a for a, b in zip(stamps, stamps[1:], strict=False)), default=0.0)


def run_report(count: int, out: Path, which: tuple[str, ...]) -> None:
    seconds = {}
    for label in which:
        folder = out / f"report-{label}"
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        context = busy(count) if label == "loaded" else contextlib.nullcontext()
        with context:
            print(load_line(label), flush=True)
            seconds[label] = sasa_bench(
                ["report", "--out", str(folder)], out / f"report-{label}.log"
            )
        silence = longest_silence(out / f"report-{label}.log")
        print(f"{label}: {seconds[label]:.1f} s; longest silence of the log {silence:.1f} s")
        for model, spread in block_spread(folder):
            print(f"  {model}: identical blocks' latencies within {spread:.2f}x")
    print(f"\nsasa-bench report (the main job); busy processes: {count}")
    print(", ".join(f"{label} {value:.1f} s" for label, value in seconds.items()))
    if len(seconds) == 2:
        print(f"loaded/idle {seconds['loaded'] / seconds['idle']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("bench", "report"))
    parser.add_argument("--busy", type=int, default=2, help="busy processes (default 2)")
    parser.add_argument("--out", type=Path, help="folder for records and logs (default: temp)")
    parser.add_argument(
        "--only", choices=("idle", "loaded"), help="report: run the main job this way only"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="sasa-load-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"records and logs in {out}")
    if args.what == "bench":
        run_bench(args.busy, out)
    else:
        run_report(args.busy, out, (args.only,) if args.only else ("idle", "loaded"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

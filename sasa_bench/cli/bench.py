"""`sasa-bench bench MODEL [MODEL ...]`: throughput, latency, memory and energy, one record each.

Every combination of model, mode, runtime, ONNX translation, attention implementation and batch
size is one measurement, run in its own subprocess (`sasa_bench.measure.sweep`) and appended to
--out as soon as it exists.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import sys
from collections import Counter
from itertools import product
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sasa_bench.cli import COMMANDS, values
from sasa_bench.cli.common import (
    add_override_arguments,
    add_slurm_arguments,
    console,
    model_from_args,
    print_json,
    slurm_options,
    thread_count,
)
from sasa_bench.cluster.tasks import run_bench_sweep
from sasa_bench.devices import DTYPES, MODES
from sasa_bench.errors import SasaBenchError
from sasa_bench.format import binary_bytes
from sasa_bench.kernels import BACKENDS
from sasa_bench.kernels.onnx import DEFAULT as DEFAULT_TRANSLATION
from sasa_bench.kernels.onnx import TRANSLATIONS
from sasa_bench.measure.model import BenchConfig
from sasa_bench.measure.runtimes import RUNTIMES
from sasa_bench.measure.sweep import DEFAULT_TIMEOUT_S, run_sweep
from sasa_bench.models.registry import PRESETS
from sasa_bench.models.thirdparty import expand, is_thirdparty
from sasa_bench.records import Record, load_records, retried_batch


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("bench", help=COMMANDS["bench"])
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="preset[:options] or timm:NAME / torchvision:NAME; fnmatch patterns ('sasa*', "
        "'timm:halonet*')",
    )
    add_override_arguments(parser)
    run = parser.add_argument_group("measurement")
    run.add_argument(
        "--device",
        type=values.device(here=False),  # looked for in BenchConfig.validate, unless on Slurm
        default="cpu",
        help="cpu, cuda, cuda:N or mps (default cpu)",
    )
    run.add_argument(
        "--devices",
        type=values.integers(0, "0,1"),
        metavar="0,1,..",
        help="spread the sweep over these GPUs",
    )
    run.add_argument("--dtype", choices=DTYPES, default="fp32")
    run.add_argument("--amp", action="store_true", help="fp32 weights, autocast to --dtype")
    run.add_argument("--channels-last", action="store_true", help="NHWC memory layout")
    run.add_argument(
        "--runtime",
        type=values.choices(tuple(RUNTIMES), "runtime"),
        metavar="NAME[,NAME]",
        help=f"{', '.join(RUNTIMES)} (default eager); every runtime but eager is checked "
        "against the float64 network before it is timed",
    )
    run.add_argument("--compile", action="store_true", help="torch.compile: --runtime compile")
    run.add_argument(
        "--translation",
        type=values.choices(tuple(TRANSLATIONS), "ONNX translation"),
        metavar="NAME[,NAME]",
        help=f"ONNX form of the attention op for the exported runtimes: "
        f"{', '.join(TRANSLATIONS)} (default {DEFAULT_TRANSLATION})",
    )
    run.add_argument(
        "--mode",
        type=values.choices(MODES, "mode"),
        default=["infer"],
        help="infer, train or infer,train",
    )
    batch = run.add_mutually_exclusive_group()
    batch.add_argument(
        "--batch-size",
        type=values.integers(1),
        dest="batch_sizes",
        metavar="N",
        help="images per step",
    )
    batch.add_argument("--batch-sizes", type=values.integers(1), metavar="1,8,64", help="default 8")
    run.add_argument(
        "--attn-impl",
        type=values.choices(tuple(BACKENDS), "attention implementation"),
        default=["reference"],
        metavar="NAME[,NAME]",
    )
    run.add_argument(
        "--warmup", type=values.integer(0), default=5, help="untimed steps first (default 5)"
    )
    run.add_argument(
        "--iters",
        type=values.integer(1),
        default=10,
        help="at least N timed steps (default 10); more until IQR/median < 5%% or --max-time",
    )
    run.add_argument(
        "--max-time",
        type=values.number(0),
        default=10.0,
        metavar="S",
        help="seconds of timed steps (10)",
    )
    run.add_argument(
        "--instances",
        type=values.integer(1),
        help="fresh model instances timed in one process, the fastest reported (default: on a "
        "CPU 3 fresh processes of one instance each, on GPUs 1)",
    )
    run.add_argument(
        "--threads",
        type=thread_count,
        help="torch intra-op threads: N, or auto (the cores idle now); default 1 on a CPU, "
        "timed in its CPU time",
    )
    run.add_argument(
        "--timeout",
        type=values.number(above=0),
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"per-measurement limit in seconds (default {DEFAULT_TIMEOUT_S:g})",
    )
    run.add_argument(
        "--in-process", action="store_true", help="no subprocess per measurement (debugging)"
    )
    parser.add_argument(
        "--out",
        type=values.output_file,
        metavar="FILE.jsonl",
        help="append one record per measurement; a rerun skips those already there",
    )
    parser.add_argument("--force", action="store_true", help="re-measure what --out holds already")
    parser.add_argument("--json", action="store_true", help="print the records as JSON")
    add_slurm_arguments(parser)


def expand_models(patterns: list[str], args: argparse.Namespace) -> list[str]:
    """Canonical names: each pattern's preset part matched (fnmatch) against the registry (a
    third-party pattern against its library's names), its options and the override flags
    applied; in order, without repeats."""
    names: list[str] = []
    for pattern in patterns:
        if is_thirdparty(pattern):  # timm:halonet* -> every timm name that matches
            for name in expand(pattern):
                canonical = model_from_args(args, name).name
                if canonical not in names:
                    names.append(canonical)
            continue
        preset, sep, options = pattern.partition(":")
        presets = [preset]
        if any(char in preset for char in "*?["):
            presets = [name for name in PRESETS if fnmatch.fnmatchcase(name, preset)]
            if not presets:
                raise SasaBenchError(f"no model matches {preset!r}; known: {', '.join(PRESETS)}")
        for name in presets:
            canonical = model_from_args(args, name + sep + options).name
            if canonical not in names:
                names.append(canonical)
    return names


def runtimes_from_args(args: argparse.Namespace) -> list[str]:
    """--runtime, with --compile as the same as `--runtime compile`."""
    if args.compile and args.runtime not in (None, ["compile"]):
        raise SasaBenchError("--compile is --runtime compile: give one of the two")
    if args.compile:
        return ["compile"]
    return args.runtime or ["eager"]


def configs_from_args(args: argparse.Namespace) -> list[BenchConfig]:
    if args.devices and not args.device.startswith("cuda"):
        raise SasaBenchError("--devices spreads a sweep over GPUs: use it with --device cuda")
    runtimes = runtimes_from_args(args)
    if args.translation and not any(RUNTIMES[name].exports for name in runtimes):
        exported = ", ".join(name for name, runtime in RUNTIMES.items() if runtime.exports)
        raise SasaBenchError(f"--translation is for the exported runtimes ({exported})")
    slurm = args.executor == "slurm"  # on a node, `cuda` is the GPU Slurm gave the task
    device = "cuda:0" if args.devices else args.device
    configs: list[BenchConfig] = []
    for model, mode, runtime, translation, impl, batch in product(
        expand_models(args.models, args),
        args.mode,
        runtimes,
        args.translation or [None],
        args.attn_impl,
        args.batch_sizes or [8],
    ):
        config = BenchConfig(
            model=model,
            device=device,
            dtype=args.dtype,
            amp=args.amp,
            channels_last=args.channels_last,
            runtime=runtime,
            mode=mode,
            batch_size=batch,
            attn_impl=impl,
            warmup=args.warmup,
            iters=args.iters,
            threads=args.threads,
            max_time_s=args.max_time,
            instances=args.instances,
        )
        # a translation only where the model runs one (elsewhere one measurement, without)
        config = dataclasses.replace(config, translation=translation or DEFAULT_TRANSLATION)
        if config.onnx_translation is None:
            config = dataclasses.replace(config, translation=None)
        if config not in configs:
            configs.append(config.validate(here=not slurm))
    for gpu in args.devices or []:
        BenchConfig(configs[0].model, device=f"cuda:{gpu}").validate()
    return configs


def already_measured(configs: list[BenchConfig], out: str | None) -> dict[int, Record]:
    """The ok records in `out` of these configurations, by their index in `configs`."""
    if out is None or not Path(out).is_file():
        return {}
    found = {}
    for record in load_records(out):
        if record.kind == "bench" and record.status == "ok":
            for index, config in enumerate(configs):
                if config.describes(record.config):
                    found[index] = record
    return found


def interrupted(args: argparse.Namespace) -> str:
    """What Ctrl-C leaves: the finished measurements, and how to go on."""
    if args.executor == "slurm":
        return (
            f"the measurements that ended are in {args.out}; the submitted ones go on in "
            "Slurm: the same command again waits for them and submits only the rest"
        )
    if args.out is None:
        return "nothing was kept (no --out); --out FILE.jsonl keeps each measurement as it ends"
    return (f"the finished measurements are in {args.out}; the same command again measures "
            "only the rest")  # fmt: skip


def check_executor(args: argparse.Namespace):
    """The SlurmOptions of --executor slurm (None: local), refusing what cannot go with it."""
    if args.executor == "slurm":
        for flag, given in (("--devices", args.devices), ("--in-process", args.in_process)):
            if given:
                raise SasaBenchError(f"{flag} is for --executor local (Slurm places the tasks)")
        if args.out is None:
            raise SasaBenchError("--executor slurm needs --out FILE.jsonl (where the tasks' "
                                 "records land, on a file system the nodes share)")  # fmt: skip
    folder = args.out.with_suffix(".slurm") if args.out else None
    return slurm_options(args, folder)


def run(args: argparse.Namespace) -> int:
    options = check_executor(args)
    configs = configs_from_args(args)
    kept = {} if args.force else already_measured(configs, args.out)
    if kept:
        print(f"bench: {len(kept)} of {len(configs)} measurements are in {args.out} already "
              "(kept; --force measures them again)", file=sys.stderr)  # fmt: skip
    todo = [config for index, config in enumerate(configs) if index not in kept]
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=args.json,
    )
    with progress:
        task = progress.add_task("bench", total=len(todo))
        if options is None:
            done = run_sweep(
                todo,
                out=args.out,
                isolate=not args.in_process,
                devices=args.devices,
                timeout_s=args.timeout,
                on_start=lambda c: progress.update(task, description=_label(c)),
                on_record=lambda c, r: progress.advance(task),
            )
        else:
            done = run_bench_sweep(
                todo,
                options,
                out=args.out,
                timeout_s=args.timeout,
                on_submitted=lambda s: progress.update(task, description=submitted_text(s)),
                on_record=lambda c, r: progress.advance(task),
            )
        records = list(kept.values()) + done
    if args.json:
        print_json([dataclasses.asdict(record) for record in records])
    else:
        print_summary(records, args.out)
    return 0 if all(record.status == "ok" for record in records) else 1


def submitted_text(submitted) -> str:
    """The progress line of a Slurm sweep once its tasks are in the queue."""
    parts = []
    if submitted.submitted:
        first = submitted.submitted[0].partition("_")[0]
        parts.append(f"submitted {len(submitted.submitted)} (job {first})")
    if submitted.followed:
        parts.append(f"following {len(submitted.followed)} submitted before")
    return "slurm: " + ", ".join(parts)


def _label(config: BenchConfig) -> str:
    runtime = "" if config.runtime == "eager" else f" {config.runtime}"
    return f"{config.model} {config.mode}{runtime} batch {config.batch_size}"


def batch_text(record: Record) -> str:
    """The asked batch, and the one measured where an out-of-memory retry changed it."""
    asked = record.config.get("batch_size")
    oom = record.metrics.get("oom_batch_sizes")
    if oom and record.status != "ok":
        return f"{asked} (OOM at {','.join(map(str, oom))})"
    used = retried_batch(record)
    return str(asked) if used is None else f"{asked}->{used} (OOM)"


def setup_text(config: dict) -> str:
    """dtype plus what differs from the default: amp, NHWC, the runtime (compiled, or an
    exported one with its translation), the attention kernel."""
    parts = [config.get("dtype", "-")]
    parts += ["amp"] if config.get("amp") else []
    parts += ["NHWC"] if config.get("channels_last") else []
    runtime = BenchConfig.upgraded(config).get("runtime")
    parts += ["compiled"] if runtime == "compile" else []
    if runtime not in ("eager", "compile"):
        translation = config.get("translation")
        parts += [f"{runtime}/{translation}" if translation else str(runtime)]
    impl = config.get("attn_impl")
    parts += [impl] if impl and impl != "reference" else []
    return " ".join(parts)


def status_text(record: Record) -> str:
    """ok, failed, or unreliable (the reasons are printed under the table)."""
    if record.status != "ok":
        return "failed"
    return "ok" if record.metrics.get("reliable", True) else "UNRELIABLE"


def runtime_lines(records: list[Record]) -> list[str]:
    """One line per checked measurement: the check, the runtime's version,
    provider and threads, and the export."""
    lines = []
    for record in records:
        runtime, check = record.metrics.get("runtime"), record.metrics.get("output_check")
        if record.status != "ok" or not runtime or not check:
            continue
        where = ", ".join(
            str(part)
            for part in (runtime.get("provider"), f"{runtime.get('threads')} thread(s)")
            if part
        )
        export = runtime.get("export")
        made = ""
        if export:
            how = "from the cache" if export["cached"] else "exported now"
            made = (
                f"; ONNX file of {export['nodes']} nodes ({how}; export {export['export_s']:.1f} s)"
            )
        if "eager_error" in check:
            against = (
                f"the float64 network's (relative; eager's {check['eager_error']:.2g}, allowed "
                f"{check['allowed']:.2g})"
            )
        else:  # a record of a check against eager's output
            against = f"eager's (relative; allowed {check['tolerance']:g})"
        lines.append(
            f"checked: {record.model} {setup_text(record.config)} batch {batch_text(record)}: "
            f"output within {check['relative_error']:.2g} of {against}; "
            f"{runtime['name']} {runtime['version']} ({where}){made}"
        )
    return lines


def print_summary(records: list[Record], out: str | None) -> None:
    show = console()
    table = Table(title="sasa-bench bench (median over the timed steps)")
    for column in ("model", "mode", "device", "setup", "batch"):
        table.add_column(column, no_wrap=True)
    for column in ("images/s", "ms/batch", "IQR", "n", "timer", "peak mem", "J/image"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status")
    for record in records:
        c, m = record.config, record.metrics
        ok = record.status == "ok"
        memory = m.get("peak_allocated_bytes") or m.get("peak_rss_bytes")
        table.add_row(
            record.model,
            c.get("mode", "-"),
            c.get("device", "-"),
            setup_text(c),
            batch_text(record),
            f"{m['images_per_s']:.1f}" if ok else "-",
            f"{m['median_ms']:.2f}" if ok else "-",
            f"{100 * m['spread']:.0f}%" if ok else "-",
            str(m.get("samples", "-")) if ok else "-",
            f"{m.get('timer')}, {m.get('threads')} thr" if ok else "-",
            binary_bytes(memory) if ok and memory else "-",
            f"{m['joules_per_image']:.3g}" if ok and m.get("joules_per_image") else "-",
            status_text(record),
        )
    show.print(table)
    notes = Counter(note for record in records for note in record.metrics.get("notes", []))
    for note, count in notes.items():
        show.print(f"note ({count} of {len(records)}): {note}", markup=False, highlight=False)
    for line in runtime_lines(records):
        show.print(line, markup=False, highlight=False)
    for record in records:
        if record.status != "ok":
            show.print(
                f"failed: {record.model} {record.config.get('mode')} {setup_text(record.config)} "
                f"batch {batch_text(record)}: {record.error}",
                markup=False,
                highlight=False,
            )
    show.print(
        "timer: cuda_events (GPU), thread-cpu (one CPU thread, its CPU time: what a busy "
        "machine does not distort; ONNX Runtime and OpenVINO on one thread run on it too), "
        "wall; peak mem: allocator peak on CUDA, host peak RSS on "
        "CPU; J/image from NVML's energy counter"
        + (f"; records appended to {out}" if out else "; not saved (use --out)"),
        markup=False,
        highlight=False,
    )

"""`sasa-bench kernels`: list, check and benchmark the attention backends."""

from __future__ import annotations

import argparse

import torch
from rich.markup import escape
from rich.table import Table

from sasa_bench.cli import COMMANDS, values
from sasa_bench.cli.common import console, print_json
from sasa_bench.devices import DTYPES, check_device
from sasa_bench.errors import SasaBenchError
from sasa_bench.format import fixed, human
from sasa_bench.kernels import BACKENDS
from sasa_bench.kernels.verify import available_backends, verify_backend
from sasa_bench.measure.kernels import SHAPES, bench_shape, copy_bandwidth_gb_per_s


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("kernels", help=COMMANDS["kernels"])
    # one action a run: each prints its own table (or JSON document) and exit code
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--list", action="store_true", help="list the backends (the default)")
    action.add_argument(
        "--check",
        action="store_true",
        help="compare every available backend with a float64 reference; exit 1 on a mismatch",
    )
    action.add_argument(
        "--bench",
        action="store_true",
        help="time backends at a network's stage shapes beside a 3x3 conv",
    )
    action.add_argument(
        "--sass",
        action="store_true",
        help="compile the Triton kernels for sm_90 (no GPU needed) and count registers, spills, "
        "load widths, shuffles and exps in the machine code",
    )
    parser.add_argument(
        "--head-dims",
        type=values.integers(1, "8,16,32,64"),
        default=[8, 16, 32, 64],
        help="--sass: comma list of head dims",
    )
    parser.add_argument(
        "--impl",
        type=values.choices(tuple(BACKENDS), "backend"),
        help="comma list of backends (default: every available one)",
    )
    parser.add_argument(
        "--device",
        type=values.device(),
        default=None,
        help="cpu, cuda, cuda:N (default: cuda if any)",
    )
    parser.add_argument(
        "--dtype",
        type=values.dtypes,
        default=None,
        help="comma list of fp32,bf16,fp16 (default: fp32,bf16 for --check, bf16 "
        "on CUDA / fp32 on CPU for --bench)",
    )
    parser.add_argument("--shapes", choices=sorted(SHAPES), default="resnet50")
    parser.add_argument("--batch", type=values.integer(1), default=32)
    parser.add_argument("--iters", type=values.integer(1), default=10)
    parser.add_argument("--warmup", type=values.integer(0), default=3)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _device(text: str | None) -> torch.device:
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return check_device(text)


def _backends(names: list[str] | None) -> list[str]:
    available = available_backends()
    if names is None:
        return [name for name, reason in available.items() if reason is None]
    for name in names:
        if available[name]:
            raise SasaBenchError(f"--impl {name}: the backend is unavailable: {available[name]}")
    return names


def _dtypes(names: list[str] | None, default: str) -> list[str]:
    return names or default.split(",")


def run(args: argparse.Namespace) -> int:
    if args.check:
        return _run_check(args)
    if args.bench:
        return _run_bench(args)
    if args.sass:
        return _run_sass(args)
    return _run_list(args)


def _run_list(args: argparse.Namespace) -> int:
    available = available_backends()
    rows = [
        {
            "name": b.name,
            "exact": b.exact,
            "available": available[b.name] is None,
            "unavailable_reason": available[b.name],
            "description": b.description,
        }
        for b in BACKENDS.values()
    ]
    if args.json:
        print_json(rows)
        return 0
    table = Table(title="attention backends (--attn-impl)")
    for column in ("name", "exact", "available", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            "yes" if row["exact"] else "no",
            "yes" if row["available"] else escape(f"no: {row['unavailable_reason']}"),
            row["description"],
        )
    console().print(table)
    return 0


def _run_check(args: argparse.Namespace) -> int:
    device = _device(args.device)
    results = []
    with console().status("checking backends ...") as status:
        for name in _backends(args.impl):
            for dtype in _dtypes(args.dtype, "fp32,bf16"):
                status.update(f"checking {name} {dtype} on {device} ...")
                results += verify_backend(name, device, dtype)
    failed = [r for r in results if not r.ok]
    if args.json:
        print_json([{**r.__dict__, "ok": r.ok} for r in results])
    else:
        table = Table(
            title=f"backends against the float64 reference on {device} "
            "(relative error: max |diff| / max |reference|)"
        )
        for column in ("backend", "dtype", "case", "out", "dq", "dk", "dv", "drel", "limit", "ok"):
            table.add_column(
                column, justify="right" if column not in ("backend", "case") else "left"
            )
        for r in results:
            cells = [f"{e:.1e}" if e is not None else "-" for e in r.errors.values()]
            table.add_row(
                r.backend,
                r.dtype,
                r.case,
                *cells,
                f"{r.threshold:.0e}",
                "ok" if r.ok else "MISMATCH",
            )
        out = console()
        out.print(table)
        for note in sorted({f"{r.backend}: {r.note}" for r in results if r.note}):
            out.print(f"note: {note}", markup=False, highlight=False)
        out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def _run_bench(args: argparse.Namespace) -> int:
    device = _device(args.device)
    dtypes = _dtypes(args.dtype, "bf16" if device.type == "cuda" else "fp32")
    names = _backends(args.impl)
    out = console()
    with out.status("measuring copy bandwidth ..."):
        bandwidth = copy_bandwidth_gb_per_s(device, 1024 if device.type == "cuda" else 256)
    rows = []
    with out.status("") as status:
        for dtype in dtypes:
            for shape in SHAPES[args.shapes]:
                status.update(f"{shape} {dtype} ...")
                rows += bench_shape(
                    names,
                    shape,
                    batch=args.batch,
                    dtype=DTYPES[dtype],
                    device=device,
                    warmup=args.warmup,
                    iters=args.iters,
                    bandwidth_gb_per_s=bandwidth,
                )
    if args.json:
        print_json(
            {"device": str(device), "copy_gb_per_s": bandwidth, "rows": [r.to_dict() for r in rows]}
        )
        return 0
    table = Table(
        title=f"attention kernels vs a 3x3 conv on {device}, batch {args.batch}, k=7, "
        f"8 heads; memory floor at {bandwidth:.0f} GB/s (measured copy)"
    )
    headers = (
        "backend",
        "shape",
        "dtype",
        "fwd ms",
        "fwd+bwd ms",
        "peak mem",
        "GB/s",
        "x floor",
        "conv fwd ms",
        "conv fwd+bwd ms",
        "x conv",
        "note",
    )
    for header in headers:
        table.add_column(
            header, justify="left" if header in ("backend", "shape", "note") else "right"
        )
    for r in rows:
        table.add_row(
            r.backend,
            r.shape,
            r.dtype,
            fixed(r.forward_ms, 3),
            fixed(r.forward_backward_ms, 3),
            human(r.peak_memory_bytes, "B") if r.peak_memory_bytes else "-",
            fixed(r.achieved_gb_per_s, 0),
            fixed(r.floor_ratio, 1),
            fixed(r.conv_forward_ms, 3),
            fixed(r.conv_forward_backward_ms, 3),
            fixed(r.conv_ratio, 1),
            r.note or "",
        )
    out.print(table)
    return 0


def _run_sass(args: argparse.Namespace) -> int:
    from sasa_bench.kernels.sass import FAMILIES, inspect_in_subprocess

    reason = BACKENDS["triton"].unavailable()
    if reason:
        raise SasaBenchError(f"--sass compiles the Triton kernels: {reason}")
    head_dims = tuple(args.head_dims)
    dtypes = _dtypes(args.dtype, "bf16")
    if len(dtypes) != 1:
        raise SasaBenchError(f"--sass takes one --dtype, got {','.join(dtypes)}: give one")
    with console().status("compiling the Triton kernels for sm_90 ..."):
        rows = inspect_in_subprocess(head_dims, dtype=dtypes[0])
    if args.json:
        print_json(rows)
        return 0
    table = Table(
        title="Triton kernels compiled for sm_90, channels-last q/k/v (static counts of the "
        "machine code; the unrolled row of k offsets appears once; the last column is the "
        "window loop's issue cost, one warp instruction per clock per SM sub-partition)"
    )
    headers = ("kernel", "d", "tile", "regs", "spill B", "smem B", "widest load")
    for header in (*headers, *FAMILIES, "scalar loads", "loop warp instr / pixel / offset"):
        table.add_column(header, justify="left" if header in ("kernel", "tile") else "right")
    for r in rows:
        table.add_row(
            str(r["kernel"]).strip("_"),
            str(r["head_dim"]),
            str(r["tile"]),
            str(r["registers"]),
            str(r["spill_bytes"]),
            str(r["shared_bytes"]),
            f"{r['widest_load_bits']} bit",
            *(str(r[f]) for f in FAMILIES),
            str(r["scalar_loads"]),
            fixed(r["warp_instructions_per_pixel_offset"], 2),
        )
    console().print(table)
    return 0

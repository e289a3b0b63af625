"""`sasa-bench profile MODEL`: analytic cost totals and a per-layer table, optionally beside the
traced FLOP counters (`--counters`) and the paper's numbers (`--paper`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch
from rich.console import Console
from rich.table import Table

from sasa_bench import paper
from sasa_bench.cli import COMMANDS, values
from sasa_bench.cli.common import add_model_arguments, console, model_from_args, print_json
from sasa_bench.counters import (
    REFERENCE,
    CounterResult,
    add_counter_columns,
    differs,
    own_macs,
    parse_counters,
    run_counter,
    traced_cost,
)
from sasa_bench.errors import SasaBenchError
from sasa_bench.format import cell, human, shape, to_csv, to_markdown
from sasa_bench.kernels import BACKENDS
from sasa_bench.layers.cost import GROUPINGS, ModelCost
from sasa_bench.models.registry import NamedModel, spec_options
from sasa_bench.models.resnet import build_model, model_cost
from sasa_bench.models.thirdparty import ThirdPartySpec, without_compiled_ops

FORMATS = ("table", "csv", "markdown")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("profile", help=COMMANDS["profile"])
    add_model_arguments(parser)
    parser.add_argument(
        "--group",
        choices=GROUPINGS,
        default="layer",
        help="rows per layer (default), per block or per stage",
    )
    parser.add_argument(
        "--counters",
        default="analytic",
        metavar="LIST",
        help="analytic,torch,fvcore,ptflops-aten,ptflops-pytorch (ptflops = both; all = every one)",
    )
    parser.add_argument(
        "--no-handlers",
        action="store_true",
        help="run the traced counters as shipped, without sasa_bench's attention handlers",
    )
    parser.add_argument(
        "--latency",
        action="store_true",
        help="add measured time, peak memory and achieved FLOP/s per row",
    )
    parser.add_argument(
        "--device",
        type=values.device(),
        default="cpu",
        help="device for --latency (cpu, cuda:N, mps)",
    )
    parser.add_argument(
        "--attn-impl",
        choices=tuple(BACKENDS),
        default="reference",
        help="attention backend for --latency",
    )
    parser.add_argument(
        "--batch-size", type=values.integer(1), default=1, help="batch for --latency"
    )
    parser.add_argument("--paper", action="store_true", help="add the paper's rows beside ours")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="per-layer table as a rich table, CSV or Markdown",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_counters(model: NamedModel, names: list[str], handlers: bool) -> dict[str, CounterResult]:
    traced = [name for name in names if name != "analytic"]
    if not traced:
        return {}
    torch.manual_seed(0)
    net = build_model(model.spec).eval()
    x = torch.randn(1, 3, model.spec.resolution, model.spec.resolution)
    results = {}
    with Console(stderr=True).status("") as status:
        for name in traced:
            status.update(f"counting {model.name} with {name} ...")
            results[name] = run_counter(name, net, x, handlers=handlers)
    return results


def add_latency_columns(rows: list[dict], name: str, args: argparse.Namespace) -> None:
    """Measured time (summed per row's layers), the largest layer peak, achieved FLOP/s."""
    from sasa_bench.measure.layers import layer_latency_rows

    with Console(stderr=True).status(f"timing the layers of {name} on {args.device} ..."):
        measured = layer_latency_rows(
            name, device=args.device, batch_size=args.batch_size, attn_impl=args.attn_impl
        )
    for row in rows:
        prefix = row["name"]
        mine = [m for m in measured if m["name"] == prefix or m["name"].startswith(prefix + ".")]
        row["time_ms"] = sum(m["time_ms"] for m in mine)
        peaks = [m["peak_memory_bytes"] for m in mine if m["peak_memory_bytes"] is not None]
        row["peak_memory_bytes"] = max(peaks) if peaks else None
        seconds = row["time_ms"] / 1e3
        row["flops_per_s"] = (
            row["flops"] * args.batch_size / seconds if row["flops"] and seconds else None
        )
    total = sum(row["time_ms"] for row in rows)
    for row in rows:
        row["time_share"] = row["time_ms"] / total if total else 0.0


def paper_comparison(name: str, cost: ModelCost) -> list[dict[str, object]]:
    return [
        {
            "table": row.table,
            "label": row.label,
            "accuracy_split": row.accuracy_split,
            "paper_flops_b": row.flops_b,
            "paper_params_m": row.params_m,
            "paper_top1": row.top1,
            "flops_b": round(cost.flops / 1e9, 3),
            "params_m": round(cost.params / 1e6, 3),
        }
        for row in paper.rows_for(name)
    ]


def thirdparty_counts(
    model: NamedModel, names: list[str], args: argparse.Namespace
) -> tuple[ModelCost, list[dict], dict[str, CounterResult], list[str]]:
    """A third-party model has no analytic count: REFERENCE's traced count (with the handlers)
    gives the rows and the MACs column, and the other counters are compared with it, per
    module on the MACs that run in each module's own forward."""
    if args.latency or args.paper:
        raise SasaBenchError(f"--latency and --paper are for sasa_bench's models, not {model.name}")
    traced = [name for name in names if name not in ("analytic", REFERENCE)]
    results = run_counters(model, [REFERENCE, *traced], handlers=not args.no_handlers)
    reference = results.pop(REFERENCE)
    if reference.macs is None:
        raise SasaBenchError(f"{model.name} could not be counted: {reference.note}")
    torch.manual_seed(0)
    net = build_model(model.spec).eval()
    x = torch.randn(1, 3, model.spec.resolution, model.spec.resolution)
    cost = traced_cost(net, x, reference)
    own = {
        name: dataclasses.replace(result, layers=own_macs(net, result))
        for name, result in results.items()
        if result.macs is not None
    }
    rows = cost.grouped("layer")
    add_counter_columns(rows, own)
    if args.group != "layer":
        rows = group_by_depth(rows, 1 if args.group == "stage" else 2, cost.flops)
    notes = [f"no analytic count for {model.name}: MACs are {REFERENCE}'s (traced, with the "
             "handlers); 'differs' compares each counter with them"]  # fmt: skip
    notes += [note for note in (without_compiled_ops(),) if note]
    return cost, rows, results, notes


def group_by_depth(rows: list[dict], depth: int, total_flops: int) -> list[dict]:
    """Module rows summed per prefix of `depth` names (depth 1: the model's children), their
    counter columns too; the differing counters are found again on the sums."""
    grouped: dict[str, dict] = {}
    for row in rows:
        key = ".".join(row["name"].split(".")[:depth])
        into = grouped.get(key)
        if into is None:
            grouped[key] = {**row, "name": key, "type": "module", "counters": dict(row["counters"])}
            continue
        into["out_shape"] = row["out_shape"]
        for field in ("params", "macs", "flops", "activations"):
            into[field] += row[field]
        for name, macs in row["counters"].items():
            into["counters"][name] = into["counters"].get(name, 0) + macs
    for row in grouped.values():
        row["flops_share"] = row["flops"] / total_flops if total_flops else 0.0
        row["differs"] = [n for n, macs in row["counters"].items() if differs(macs, row["macs"])]
    return list(grouped.values())


def run(args: argparse.Namespace) -> int:
    names = parse_counters(args.counters)
    model = model_from_args(args)
    reference = "analytic"
    if isinstance(model.spec, ThirdPartySpec):
        reference = REFERENCE
        cost, rows, results, notes = thirdparty_counts(model, names, args)
    else:
        cost = model_cost(model.spec)
        rows = cost.grouped(args.group)
        results = run_counters(model, names, handlers=not args.no_handlers)
        add_counter_columns(rows, results)
        rounding = model.spec.rounding_note()  # heads=7 changes every width: say so
        notes = [note for note in (rounding, *(r.note for r in results.values())) if note]
    if args.latency:
        add_latency_columns(rows, model.name, args)
    counted = [n for n, r in results.items() if r.macs is not None]
    if args.json:
        print_json(_json(model, cost, rows, names, results, args.paper, reference))
        return 0
    if args.format != "table":
        headers, cells = _cells(rows, counted, readable=args.format == "markdown")
        sys.stdout.write((to_csv if args.format == "csv" else to_markdown)(headers, cells))
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        return 0
    out = console()
    title = (
        f"{model.name} at {model.spec.resolution}x{model.spec.resolution}, per {args.group}"
        f" (per image; MACs{'' if reference == 'analytic' else f' ({reference})'}, "
        "FLOPs = 2 x MACs)"
    )
    table = Table(title=title)
    headers, cells = _cells(rows, counted, readable=True)
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < 4 else "right", no_wrap=True)
    for row in cells:
        table.add_row(*map(str, row))
    out.print(table)
    out.print(
        f"[bold]{model.name}[/]: params {cost.params:,} ({cost.params / 1e6:.2f} M), "
        f"MACs {cost.macs / 1e9:.3f} G{'' if reference == 'analytic' else f' ({reference})'}, "
        f"FLOPs {cost.flops / 1e9:.3f} G (= 2 x MACs), "
        f"activations {cost.activations / 1e6:.2f} M"
    )
    for name in counted:
        result = results[name]
        off = 100 * (result.macs / cost.macs - 1) if cost.macs else 0.0
        flagged = sum(name in row["differs"] for row in rows)
        out.print(
            f"  {name}: MACs {result.macs / 1e9:.3f} G, FLOPs {result.flops / 1e9:.3f} G "
            f"({off:+.3f} % vs {reference}; {flagged} row(s) differ by more than 1 %)"
        )
    for note in notes:
        out.print(f"  note: {note}", markup=False, highlight=False)
    if args.paper:
        _print_paper(out, model.name, paper_comparison(model.name, cost))
    return 0


def _cells(rows: list[dict], counted: list[str], readable: bool) -> tuple[list[str], list[list]]:
    fmt = human if readable else (lambda v: v)
    headers = ["name", "type", "input", "output", "params", "MACs"]
    headers += [f"{name} MACs" for name in counted]
    headers += ["FLOPs", "activations", "FLOPs share"]
    latency = bool(rows) and "time_ms" in rows[0]
    if latency:
        headers += ["time ms", "time share", "peak mem", "FLOP/s"]
    if counted:
        headers.append("differs >1%")
    cells = []
    for row in rows:
        line = [
            row["name"] or "(model)",
            row["type"],
            shape(row["in_shape"]),
            shape(row["out_shape"]),
            fmt(row["params"]),
            fmt(row["macs"]),
        ]
        line += [fmt(row["counters"][name]) for name in counted]
        share = row["flops_share"]
        line += [
            fmt(row["flops"]),
            fmt(row["activations"]),
            f"{100 * share:.1f}%" if readable else round(share, 6),
        ]
        if latency:
            rate, peak = row["flops_per_s"], row["peak_memory_bytes"]
            line += [
                f"{row['time_ms']:.3f}" if readable else row["time_ms"],
                f"{100 * row['time_share']:.1f}%" if readable else round(row["time_share"], 6),
                (human(peak, "B") if peak is not None else "-") if readable else peak,
                (human(rate) if rate else "-") if readable else rate,
            ]
        if counted:
            line.append(",".join(row["differs"]) or ("-" if readable else ""))
        cells.append(line)
    return headers, cells


def _json(model, cost, rows, names, results, with_paper, reference) -> dict[str, object]:
    thirdparty = isinstance(model.spec, ThirdPartySpec)
    result = {
        "model": model.name,
        "options": {"resolution": model.spec.resolution, "num_classes": model.spec.num_classes}
        if thirdparty
        else spec_options(model.spec),
        "resolution": model.spec.resolution,
        "params": cost.params,
        "macs": cost.macs,
        "flops": cost.flops,
        "activations": cost.activations,
        "convention": "flops = 2 x macs, per image; elementwise ops not counted",
        "channel_rounding": model.spec.rounding_note(),
        "reference": reference,  # what the MACs and the 'differs' lists are
        "layers": rows,
    }
    if len(names) > 1 or results:
        counters = {}
        if thirdparty:
            counters[reference] = {
                "macs": cost.macs,
                "flops": cost.flops,
                "layers": {row["name"]: row["macs"] for row in rows},
            }
        elif "analytic" in names:
            counters["analytic"] = {
                "macs": cost.macs,
                "flops": cost.flops,
                "layers": {row["name"]: row["macs"] for row in rows},
            }
        for name, counted in results.items():
            counters[name] = {
                "macs": counted.macs,
                "flops": counted.flops,
                "note": counted.note,
                "activations": counted.activations,
                "layers": {row["name"]: row["counters"].get(name) for row in rows},
            }
        result["counters"] = counters
    if with_paper and not thirdparty:
        result["paper"] = paper_comparison(model.name, cost)
    return result


def _print_paper(out, name: str, comparison: list[dict[str, object]]) -> None:
    if not comparison:
        out.print(f"the paper reports no row for {name}")
        return
    table = Table(title=f"{name}: ours (analytic) beside the paper's reported numbers")
    table.add_column("paper table")
    table.add_column("row")
    for column in (
        "FLOPs B ours",
        "FLOPs B paper",
        "params M ours",
        "params M paper",
        "top-1 % paper",
    ):
        table.add_column(column, justify="right")
    for row in comparison:
        table.add_row(
            row["table"],
            row["label"],
            f"{row['flops_b']:.2f}",
            cell(row["paper_flops_b"]),
            f"{row['params_m']:.2f}",
            cell(row["paper_params_m"]),
            cell(row["paper_top1"])
            + (" (held-out)" if row["accuracy_split"] == "held-out" else ""),
        )
    out.print(table)

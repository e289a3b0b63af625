"""`sasa-bench profile MODEL`: analytic cost totals and a per-layer table."""

from __future__ import annotations

import argparse

from rich.table import Table

from sasa_bench import paper
from sasa_bench.analysis.complexity import GROUPINGS, ModelCost, model_cost
from sasa_bench.cli.common import add_model_arguments, console, human, model_from_args, print_json
from sasa_bench.models.registry import spec_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("profile", help="params, MACs, FLOPs and activations per layer")
    add_model_arguments(parser)
    parser.add_argument(
        "--group",
        choices=GROUPINGS,
        default="layer",
        help="rows per layer (default), per block or per stage",
    )
    parser.add_argument("--paper", action="store_true", help="add the paper's rows beside ours")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


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


def run(args: argparse.Namespace) -> int:
    model = model_from_args(args)
    cost = model_cost(model.spec)
    rows = cost.grouped(args.group)
    result = {
        "model": model.name,
        "options": spec_options(model.spec),
        "resolution": model.spec.resolution,
        "params": cost.params,
        "macs": cost.macs,
        "flops": cost.flops,
        "activations": cost.activations,
        "convention": "flops = 2 x macs, per image; elementwise ops not counted",
        "layers": rows,
    }
    if args.paper:
        result["paper"] = paper_comparison(model.name, cost)
    if args.json:
        print_json(result)
        return 0
    out = console()
    table = Table(
        title=f"{model.name} at {model.spec.resolution}x{model.spec.resolution}, "
        f"per {args.group} (analytic, per image)"
    )
    for column in ("name", "type", "input", "output"):
        table.add_column(column, no_wrap=True)
    for column in ("params", "MACs", "FLOPs", "activations", "share"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["name"],
            row["type"],
            _shape(row["in_shape"]),
            _shape(row["out_shape"]),
            human(row["params"]),
            human(row["macs"]),
            human(row["flops"]),
            human(row["activations"]),
            f"{100 * row['flops_share']:.1f}%",
        )
    out.print(table)
    out.print(
        f"[bold]{model.name}[/]: params {cost.params:,} ({cost.params / 1e6:.2f} M), "
        f"MACs {cost.macs / 1e9:.3f} G, FLOPs {cost.flops / 1e9:.3f} G (= 2 x MACs), "
        f"activations {cost.activations / 1e6:.2f} M"
    )
    if args.paper:
        _print_paper(out, model.name, result["paper"])
    return 0


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
            _opt(row["paper_flops_b"]),
            f"{row['params_m']:.2f}",
            _opt(row["paper_params_m"]),
            _opt(row["paper_top1"])
            + (" (held-out)" if row["accuracy_split"] == "held-out" else ""),
        )
    out.print(table)


def _shape(shape: list[int]) -> str:
    return "x".join(str(s) for s in shape)


def _opt(value: object) -> str:
    return "-" if value is None else str(value)

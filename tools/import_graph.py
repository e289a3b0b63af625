"""The import graph of sasa_bench: every import, inside functions too, read from the source.

    python3 tools/import_graph.py                  # stage graph, cycles, imports against STAGES
    python3 tools/import_graph.py --modules        # every module's imports as well
    python3 tools/import_graph.py --root DIR       # another checkout's package folder

A stage is a top-level module or package of `sasa_bench` (`kernels`, `measure`, `cli`, ...).
STAGES lists them bottom-up: a module may import its own stage and the stages below it, never
one above. Exit status 1 when a module cycle, an upward import or a stage missing from STAGES
exists, else 0 (tests/test_layout.py runs this check).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "sasa_bench"
#: bottom-up; stages on one line may import each other's modules but not in a cycle
STAGES: tuple[tuple[str, ...], ...] = (
    ("", "errors"),  # the package itself (its version) and the user-facing errors
    ("format", "devices", "records"),
    ("kernels",),
    ("layers",),
    ("models",),
    ("paper", "counters"),
    ("measure",),
    ("train",),
    ("cluster",),  # Slurm: runs measure's and train's work on the nodes
    ("regression",),
    ("report",),
    ("cli", "__main__"),
)
RANK = {stage: rank for rank, names in enumerate(STAGES) for stage in names}


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the package folder `root`."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules `name` imports anywhere in its file (functions included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                child = f"{module}.{alias.name}"
                targets.add(child if child in known else module)
    return {t for t in targets if t in known and t != name}


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports(name, path, known) for name, path in known.items()}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def upward(edges: dict[str, set[str]]) -> Iterator[tuple[str, str]]:
    """(importer, imported) pairs where the imported module's stage ranks above the importer's."""
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = RANK.get(stage(source)), RANK.get(stage(target))
            if a is not None and b is not None and b > a:
                yield source, target


def unranked(edges: dict[str, set[str]]) -> list[str]:
    """Stages that STAGES does not place (each is an error: its imports cannot be checked)."""
    return sorted({stage(m) for m in edges if stage(m) not in RANK})


def stage_graph(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for source, targets in edges.items():
        out.setdefault(stage(source) or PACKAGE, set()).update(
            stage(t) or PACKAGE for t in targets if stage(t) != stage(source)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / PACKAGE
    parser.add_argument("--root", type=Path, default=default, help="the package folder")
    parser.add_argument("--modules", action="store_true", help="print every module's imports")
    args = parser.parse_args(argv)
    edges = graph(args.root)
    if args.modules:
        print("modules (module -> modules it imports):")
        for name in sorted(edges):
            print(f"  {name} -> {', '.join(sorted(edges[name])) or '-'}")
    print("stages (stage -> stages it imports):")
    by_stage = stage_graph(edges)
    for name in sorted(by_stage, key=lambda s: (RANK.get(s, -1), s)):
        print(f"  {name} -> {', '.join(sorted(by_stage[name])) or '-'}")
    loops = cycles(edges)
    print(f"module cycles: {len(loops)}")
    for loop in loops:
        print("  " + " <-> ".join(loop))
    against = list(upward(edges))
    print(f"imports against the stage order: {len(against)}")
    for source, target in against:
        print(f"  {source} -> {target}")
    missing = unranked(edges)
    print(f"stages outside the stage order: {', '.join(missing) or 'none'}")
    return 1 if loops or against or missing else 0


if __name__ == "__main__":
    sys.exit(main())

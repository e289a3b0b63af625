"""Every accuracy the README and docs quote is the committed reference records' mean ± sd.

A quoted accuracy sits in a table under `<!-- accuracy: RECORDS.jsonl -->`, one row per
experiment: model, data, epochs, then `mean ± sd (n=N)` as `SeedSummary.text()` writes it.
The test recomputes each row from the records and fails on any difference, and on a mean ± sd
written anywhere outside such a table.
"""

import re
from pathlib import Path

import pytest

from sasa_bench.records import load_records
from sasa_bench.train.seeds import summarize

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- accuracy: (\S+) -->")
QUOTED = re.compile(r"\d+\.\d+ ± \d+\.\d+ \(n=\d+\)")


def quoted_tables(text: str):
    """(records path, [(model, data, epochs, accuracy text)], lines the tables cover)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = MARKER.search(line)
        if not match:
            continue
        rows, covered = [], {index}
        for offset, row in enumerate(lines[index + 1 :], start=index + 1):
            if not row.startswith("|"):
                break
            covered.add(offset)
            cells = [c.strip().strip("`") for c in row.strip().strip("|").split("|")]
            if cells[0] in ("model", "") or set(cells[0]) <= {"-"}:
                continue
            rows.append((cells[0], cells[1], int(cells[2]), cells[3]))
        yield match.group(1), rows, covered


def mismatches(text: str, name: str) -> tuple[list[str], int]:
    """What in the quoted tables of `text` differs from their records; how many rows there."""
    problems, checked = [], 0
    for path, rows, _ in quoted_tables(text):
        summaries = {(s.model, s.data, s.epochs): s for s in summarize(load_records(ROOT / path))}
        if not rows:
            problems.append(f"{name}: an empty accuracy table for {path}")
        for model, data, epochs, quoted in rows:
            summary = summaries.get((model, data, epochs))
            if summary is None:
                problems.append(f"{name}: {model} {data} {epochs} epochs not in {path}")
            elif quoted != summary.text():
                problems.append(f"{name}: {model}: quoted {quoted}, records {summary.text()}")
            checked += 1
    return problems, checked


def test_documented_accuracies_equal_the_reference_records():
    total = 0
    for document in DOCUMENTS:
        problems, checked = mismatches(document.read_text(), document.name)
        assert not problems, problems
        total += checked
    assert total >= 8  # the main job's four models and the conventions study


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
def test_no_accuracy_is_quoted_outside_a_checked_table(document):
    text = document.read_text()
    covered = set().union(*(lines for _, _, lines in quoted_tables(text)), set())
    for number, line in enumerate(text.splitlines()):
        if QUOTED.search(line):
            assert number in covered, f"{document.name}:{number + 1}: {line.strip()}"


def test_the_check_finds_a_changed_number():
    records = ROOT / "reports" / "reference" / "mnist5k.jsonl"
    (summary, *_) = summarize(load_records(records))
    table = (
        f"<!-- accuracy: {records.relative_to(ROOT)} -->\n| model | data | epochs | top-1 |\n"
        f"|---|---|---|---|\n| {summary.model} | {summary.data} | {summary.epochs} | {{}} |\n"
    )
    assert mismatches(table.format(summary.text()), "right") == ([], 1)
    wrong = f"{summary.mean + 0.1:.1f} ± {summary.sd:.1f} (n={summary.n})"
    problems, _ = mismatches(table.format(wrong), "wrong")
    assert problems == [f"wrong: {summary.model}: quoted {wrong}, records {summary.text()}"]

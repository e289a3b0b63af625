"""Smoke reports: figures with data, tables with their rows, self-contained HTML, resume, and a
real headless browser opening the page."""

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest

from sasa_bench.cli import main
from sasa_bench.records import load_records
from sasa_bench.report import render
from sasa_bench.report.build import build_report
from sasa_bench.report.plots import plotted_points
from sasa_bench.report.store import RecordStore
from sasa_bench.report.study import available, load_study

STUDIES = ["table1", "table3", "table4", "table5", "table6", "table7", "fig5", "backends"]


TINY_STUDY = '''"""A tiny study for the tests: ResNet-26 at width 0.125, trained for one epoch."""
from sasa_bench.report.study import Bench, Study, Train

def study(smoke):
    return Study(name="tiny", title="Tiny", models=("resnet26:width=0.125",),
                 bench=Bench("resolution=32", batch_size=2, warmup=1, iters=2),
                 train=Train(("resnet26:width=0.125",), overrides="", epochs=1))
'''
NAMES = ["table6", "tiny", "backends"]


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("experiments")
    for name in ("table6", "backends"):
        shutil.copy(Path("experiments", f"{name}.py"), folder)
    (folder / "tiny.py").write_text(TINY_STUDY)
    return folder


@pytest.fixture(scope="module")
def report(tmp_path_factory, experiments) -> Path:
    """table6 (2 models, no training), a tiny trained study and backends, smoke."""
    folder = tmp_path_factory.mktemp("report")
    build_report(NAMES, smoke=True, out=folder, experiments=experiments)
    return folder


def test_every_paper_study_exists_and_opens_with_its_command():
    assert set(STUDIES) <= set(available())
    for name in STUDIES:
        source = Path("experiments", f"{name}.py").read_text()
        assert f"sasa-bench report {name}" in source.split('"""')[1]
        assert "Run time" in source and "Sized for" in source
        assert load_study(name, smoke=True).name == name
        assert load_study(name, smoke=False).name == name


def test_smoke_report_files(report):
    for name in ("report.md", "index.html", "records.jsonl", "records.csv", "tables/table6.csv"):
        assert (report / name).is_file(), name
    kinds = [r.kind for r in load_records(report / "records.jsonl")]
    assert kinds.count("bench") == 3 and kinds.count("kernels") == 1 and kinds.count("train") == 1


def test_trained_accuracy_is_in_the_table_and_the_figures(report, experiments):
    study = load_study("tiny", smoke=True, directory=experiments)
    store = RecordStore(report / "records.jsonl", [])
    (entry,) = render.entries_of(study, store, "cpu")
    top1 = entry.accuracy.metrics["top1"]
    assert entry.accuracy.model == "resnet26:num_classes=10,resolution=32,width=0.125"
    assert f"| {top1:.1f} (digits, resnet26:num_classes=10" in (report / "report.md").read_text()
    names = {made.name for made in render.study_figures(study, [entry], "cpu")}
    assert names == {"tiny-cost", "tiny-throughput", "tiny-memory"}


def test_figures_exist_and_have_plotted_data(report):
    study = load_study("table6", smoke=True)
    store = RecordStore(report / "records.jsonl", [])
    figures = render.study_figures(study, render.entries_of(study, store, "cpu"), "cpu")
    assert {made.name for made in figures} == {"table6-cost", "table6-throughput", "table6-memory"}
    for made in figures:
        name = made.name
        assert plotted_points(made.figure) >= 2, name
        for suffix in ("png", "svg"):
            assert (report / "figures" / f"{name}.{suffix}").stat().st_size > 5000
        pixels = matplotlib.image.imread(report / "figures" / f"{name}.png")
        assert pixels.std() > 0.05  # not a blank image


def test_tables_have_the_expected_rows(report):
    text = (report / "report.md").read_text()
    section = text.split("## Table 6")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("| sasa50")]
    assert [r.split("|")[1].strip() for r in rows] == ["sasa50:logits=qr", "sasa50"]
    assert "| 6.1 | 6.14 | 16.7 | 16.78 | 76.9 |" in rows[0]  # paper beside ours
    kernels = text.split("## Attention backends")[1]
    assert kernels.count("| reference |") == 2  # the two smoke shapes


def test_html_is_self_contained(report):
    page = (report / "index.html").read_text()
    assert page.count("<img ") == len(list((report / "figures").glob("*.png")))
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_interrupted_report_resumes_from_its_records(report, experiments, tmp_path):
    folder = tmp_path / "again"
    shutil.copytree(report, folder)
    lines = (folder / "records.jsonl").read_text().splitlines()
    (folder / "records.jsonl").write_text("\n".join(lines[1:]) + "\n")  # lose the first record
    build_report(NAMES, smoke=True, out=folder, experiments=experiments)
    again = load_records(folder / "records.jsonl")
    assert len(again) == len(lines)  # only the lost one was measured again
    assert {r.model for r in again} == {r.model for r in load_records(report / "records.jsonl")}


def test_report_cli_errors(capsys):
    assert main(["report", "table99"]) == 2
    assert "unknown study 'table99'" in capsys.readouterr().err
    assert main(["report", "table6", "--device", "cuda:7"]) == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)",
)
def test_html_report_in_a_real_headless_browser(report, tmp_path):
    url = (report / "index.html").resolve().as_uri()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    shot = tmp_path / "page.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,2400", url],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 20_000
    assert matplotlib.image.imread(shot).std() > 0.05
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--dump-dom", url],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    images = len(list((report / "figures").glob("*.png")))
    assert f'data-figures-loaded="{images}/{images}"' in dom

"""Smoke reports: figures with data, tables with their rows, self-contained HTML, resume, and a
real headless browser opening the page."""

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from sasa_bench import paper
from sasa_bench.cli import main
from sasa_bench.cli.report import Lines
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.records import load_records
from sasa_bench.report import render
from sasa_bench.report.build import build_report
from sasa_bench.report.plots import panel_data, plotted_points
from sasa_bench.report.store import RecordStore
from sasa_bench.report.study import available, load_study

STUDIES = ["table1", "table3", "table4", "table5", "table6", "table7", "fig5", "backends"]


TINY_STUDY = '''"""A tiny study for the tests: ResNet-26 at width 0.125, one epoch, two seeds."""
from sasa_bench.report.study import Bench, Study, Train

def study(smoke):
    return Study(name="tiny", title="Tiny", models=("resnet26:width=0.125",),
                 bench=Bench("resolution=32", batch_size=2, warmup=1, iters=2, max_time_s=0.5),
                 train=Train(("resnet26:width=0.125",), overrides="", epochs=1, seeds=(0, 1)))
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
    # table6's two models, tiny's one, and the configuration tiny trains (with two seeds)
    assert kinds.count("bench") == 4 and kinds.count("kernels") == 1 and kinds.count("train") == 2


def test_trained_accuracy_is_in_the_table_and_the_figures(report, experiments):
    study = load_study("tiny", smoke=True, directory=experiments)
    store = RecordStore(report / "records.jsonl", [])
    (entry,) = render.entries_of(study, store, "cpu")
    runs = [r for r in load_records(report / "records.jsonl") if r.kind == "train"]
    top1 = [r.metrics["top1"] for r in sorted(runs, key=lambda r: r.config["seed"])]
    assert entry.accuracy.model == "resnet26:num_classes=10,resolution=32,width=0.125"
    assert entry.accuracy.seeds == (0, 1) and entry.accuracy.top1 == tuple(top1)
    mean, sd = sum(top1) / 2, abs(top1[0] - top1[1]) / 2**0.5  # the sample sd of two runs
    cell = f"| {mean:.1f} ± {sd:.1f} (n=2) (digits, resnet26:num_classes=10"
    assert cell in (report / "report.md").read_text()
    figures = {made.name: made.figure for made in render.study_figures(study, [entry], "cpu")}
    assert set(figures) == {"tiny-cost", "tiny-throughput", "tiny-memory"}
    # the measured point is the mean, its vertical bar mean ± sd
    (ax,) = [ax for ax in figures["tiny-cost"].axes if "flops" in ax.get_title()]
    (bar,) = [c for c in ax.collections if len(c.get_segments())]
    ((_, low), (_, high)) = bar.get_segments()[0]
    assert (low, high) == pytest.approx((mean - sd, mean + sd))


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
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    links = re.findall(r'href="([^"]*)"', page)  # the raw records and tables, beside the page
    assert "records.jsonl" in links and all((report / link).is_file() for link in links)


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


def table_rows(report: Path, section: str) -> list[list[str]]:
    text = (report / "report.md").read_text().split(f"## {section}")[1].split("\n## ")[0]
    table = text.split("| model |")[1].split("\n\n")[0]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_every_measured_number_shows_its_spread_and_sample_count(report):
    headers = list(render.ROW_HEADERS)
    for row in table_rows(report, "Table 6"):
        images = row[headers.index("images/s (IQR, n)")]
        latency = row[headers.index("latency ms (IQR)")]
        assert re.fullmatch(r"[\d.]+ \(IQR [\d.]+, n=\d+\)( †)?", images), images
        assert re.fullmatch(r"[\d.]+ \(IQR [\d.]+\)( †)?", latency), latency
        assert row[headers.index("J/image")] == "no energy counter on a CPU"
    text = (report / "report.md").read_text()
    assert "Hardware: CPU " in text and "torch threads used: 1" in text


def test_an_unreliable_number_is_marked_and_the_legend_says_why(report, tmp_path):
    folder = tmp_path / "marked"
    shutil.copytree(report, folder)
    records = load_records(folder / "records.jsonl")
    bench = next(r for r in records if r.kind == "bench" and r.model == "sasa50:resolution=64")
    bench.metrics["reliable"] = False
    bench.metrics["unreliable_reasons"] = ["contention under a wall timer: simulated"]
    other = next(r for r in records if r.kind == "bench" and r.model.startswith("sasa50:logits"))
    other.metrics["reliable"] = True  # whatever the busy machine made of it
    other.metrics.pop("unreliable_reasons", None)
    (folder / "records.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    study = load_study("table6", smoke=True)
    render.render_report(folder, [study], RecordStore(folder / "records.jsonl", []),
                         device="cpu", smoke=True)  # fmt: skip
    rows = {row[0]: row for row in table_rows(folder, "Table 6")}
    assert rows["sasa50"][7].endswith("†") and not rows["sasa50:logits=qr"][7].endswith("†")
    text = (folder / "report.md").read_text()
    assert "† unreliable" in text and "sasa50:resolution=64: contention under a wall timer" in text
    frame = pd.read_csv(folder / "tables" / "table6.csv").set_index("model")
    assert frame.loc["sasa50", "reliable"] == 0 and frame.loc["sasa50:logits=qr", "reliable"] == 1


def test_csv_tables_have_numbers_in_their_numeric_columns(report):
    for name in ("table6", "tiny"):
        frame = pd.read_csv(report / "tables" / f"{name}.csv")
        assert list(frame.columns) == list(render.CSV_HEADERS)
        text_columns = {"model", "measured_top1_dataset", "measured_top1_model", "timer",
                        "unreliable_reasons"}  # fmt: skip
        for column in set(frame.columns) - text_columns:
            assert frame[column].dtype.kind in "fi", (name, column, frame[column].dtype)
    tiny = pd.read_csv(report / "tables" / "tiny.csv").iloc[0]
    assert tiny["images_per_s"] > 0 and tiny["measured_top1_dataset"] == "digits"


def test_every_plotted_point_takes_x_and_y_from_one_configuration(report, experiments):
    """Read each figure's data back: paper points are the paper's row, every measured point's
    x and y come from records of the one configuration its legend names."""
    records = load_records(report / "records.jsonl")
    bench = {r.model: r.metrics for r in records if r.kind == "bench"}
    runs: dict[str, list[float]] = {}
    for r in records:
        if r.kind == "train":
            runs.setdefault(r.model, []).append(r.metrics["top1"])
    top1 = {model: sum(values) / len(values) for model, values in runs.items()}  # over seeds
    store = RecordStore(report / "records.jsonl", [])
    seen_panels = set()
    for study in (load_study("table6", smoke=True), load_study("tiny", True, experiments)):
        entries = render.entries_of(study, store, "cpu")
        for made in render.study_figures(study, entries, "cpu"):
            for title, points in panel_data(made.figure):
                assert title.startswith(("paper: ImageNet", "measured here:")), title
                seen_panels.add((made.name.split("-")[1], title.split(":")[0]))
                for label, x, y in points:
                    flops = model_cost(parse_model(label).spec).flops / 1e9
                    if title.startswith("paper"):  # the paper's own row, both coordinates
                        row = paper.row_for(label, study.paper_table)
                        assert y == row.top1 and x in (row.flops_b, row.params_m)
                    elif "seeds) against flops" in title:
                        assert (x, y) == pytest.approx((flops, top1[label]))
                    elif "seeds) against params" in title:
                        params = model_cost(parse_model(label).spec).params / 1e6
                        assert (x, y) == pytest.approx((params, top1[label]))
                    elif "seeds) against" in title:  # speed and accuracy of the trained model
                        assert label in top1 and label in bench
                        assert y == pytest.approx(top1[label])
                    else:  # a measured quantity against the FLOPs of what was measured
                        assert x == pytest.approx(flops) and label in bench
                        memory = render.peak_bytes_of(bench[label]) / 2**20
                        speed = bench[label]["images_per_s"]
                        assert y in (pytest.approx(speed), pytest.approx(memory))
    assert ("cost", "paper") in seen_panels and ("cost", "measured here") in seen_panels
    assert ("throughput", "measured here") in seen_panels


def test_off_a_terminal_the_report_prints_a_line_per_measurement(experiments, tmp_path, capsys):
    build_report(["tiny"], smoke=True, out=tmp_path / "r", experiments=experiments,
                 progress=Lines())  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert all(re.match(r"\[ *\d+\.\d s\] ", line) for line in lines), lines
    finished = [line for line in lines if re.search(r"\d/4 .*: .*\(\d+\.\d s\)$", line)]
    assert len(finished) == 4  # bench, train (two seeds), bench of the trained model
    assert any("epoch 1/1" in line for line in lines)  # the training's epochs as they end
    assert any("images/s (IQR" in line for line in finished)

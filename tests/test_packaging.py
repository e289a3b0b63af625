"""What `pip install .` (not editable) installs: every package of the tree, the embedded data and
the studies, so that the reports run from the installed copy alone."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_package_list_names_every_package_of_the_tree():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "sasa_bench").rglob("__init__.py")
    }
    assert set(config["packages"]) == found | {"sasa_bench.experiments"}
    assert config["package-dir"] == {"sasa_bench.experiments": "experiments"}


@pytest.mark.slow
def test_an_installed_copy_runs_a_report_from_another_folder(tmp_path):
    """`pip install . --target` (a regular, non-editable install, without dependencies: this
    interpreter has them), then a report run from a folder far from the source tree."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    installed = target / "sasa_bench"
    assert (installed / "experiments" / "table1.py").is_file()
    assert (installed / "data" / "mnist5k.npz").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run(
        [sys.executable, "-c", "import sasa_bench, sasa_bench.report.study as s; "
         "print(sasa_bench.__file__); print(s.EXPERIMENTS_DIR)"],
        cwd=work, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    assert all(path.startswith(str(target)) for path in where), where
    subprocess.run(
        [sys.executable, "-m", "sasa_bench", "report", "table6", "--smoke", "--out", "r"],
        cwd=work, env=env, check=True, capture_output=True,
    )  # fmt: skip
    assert "Table 6" in (work / "r" / "report.md").read_text()

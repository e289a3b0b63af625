"""Regression checks for CI (`sasa-bench check`): exact costs, speed as side-by-side ratios
tested for significance, peak memory with a tolerance, against a versioned baseline file.

baseline.py      the file format (load, validate, save)
suites.py        the default checks per device
measure.py       interleaved timing and peaks of one check
significance.py  the one-sided Mann-Whitney U test the speed comparisons use
compare.py       old against new, one Finding each
check.py         run_check: measure, compare, report
summary.py       the report as text cells and as a Markdown summary for a CI page
"""

from sasa_bench.regression.baseline import Baseline, load_baseline, save_baseline
from sasa_bench.regression.check import CheckReport, CheckRun, run_check
from sasa_bench.regression.suites import default_baseline

__all__ = [
    "Baseline",
    "CheckReport",
    "CheckRun",
    "default_baseline",
    "load_baseline",
    "run_check",
    "save_baseline",
]

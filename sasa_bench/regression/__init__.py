"""Regression checks for CI (`sasa-bench check`): exact costs, speed as side-by-side ratios
tested for significance, peak memory with a tolerance, against a versioned baseline file.

baseline.py  the file format (load, validate, save)     suites.py   default checks per device
measure.py   interleaved timing and peaks of a check    compare.py  old vs new, one Finding each
check.py     run_check: measure, compare, report
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

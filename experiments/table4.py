"""Table 4: spatial extent k of the attention window (ResNet-50, conv stem), k = 3..11.

Command:  sasa-bench report table4 [--smoke] [--device cuda] [--results FILE]
Run time: full, about 3 min on one H100 (5 models); smoke, under a minute on a 2-core CPU.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
"""

from sasa_bench.report.study import Study, default_bench


def study(smoke: bool) -> Study:
    return Study(
        name="table4",
        title="Table 4: spatial extent k (ResNet-50)",
        models=tuple("sasa50" if k == 7 else f"sasa50:k={k}" for k in (3, 5, 7, 9, 11)),
        paper_table="4",
        bench=default_bench(smoke),
    )

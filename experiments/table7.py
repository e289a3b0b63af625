"""Table 7: attention stems of the full-attention ResNet-50.

Command:  sasa-bench report table7 [--smoke] [--device cuda] [--results FILE]
Run time: full, about 2 min on one H100; smoke, about a minute on a 2-core CPU.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
"""

from sasa_bench.report.study import Study, default_bench


def study(smoke: bool) -> Study:
    return Study(
        name="table7",
        title="Table 7: attention stems (full-attention ResNet-50)",
        models=("sasa50:stem=attention-plain", "sasa50:stem=attention-convvalues", "sasa50-full"),
        paper_table="7",
        bench=default_bench(smoke),
    )

"""Table 6: attention logits, q.r only (no keys) against q.k + q.r (ResNet-50).

Command:  sasa-bench report table6 [--smoke] [--device cuda] [--results FILE]
Run time: full, about 1 min on one H100; smoke, under a minute on a 2-core CPU.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
"""

from sasa_bench.report.study import Study, default_bench


def study(smoke: bool) -> Study:
    return Study(
        name="table6",
        title="Table 6: attention logits (ResNet-50)",
        models=("sasa50:logits=qr", "sasa50"),
        paper_table="6",
        bench=default_bench(smoke),
    )

"""Table 5: positional encoding (ResNet-50): none, absolute, relative.

Command:  sasa-bench report table5 [--smoke] [--device cuda] [--results FILE]
Run time: full, about 2 min on one H100; smoke, under a minute on a 2-core CPU.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
"""

from sasa_bench.report.study import Study, default_bench


def study(smoke: bool) -> Study:
    return Study(
        name="table5",
        title="Table 5: positional encoding (ResNet-50)",
        models=("sasa50:pos=none", "sasa50:pos=absolute", "sasa50"),
        paper_table="5",
        bench=default_bench(smoke),
        notes=(
            "Held-out accuracies (4 % of ImageNet train) in the paper's column.",
            "FLOPs of 'none' and 'absolute' differ from the paper's by 0.12 B: see the README.",
        ),
    )

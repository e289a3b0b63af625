"""Table 3: which layer groups use convolution and which attention (ResNet-50, conv stem).

Command:  sasa-bench report table3 [--smoke] [--device cuda] [--results FILE]
Run time: full, about 4 min of benchmarks on one H100 (8 models); smoke, about 1 min on a
          2-core CPU (64x64, batch 2; no training: accuracy only from --results).
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
"""

from sasa_bench.report.study import Study, default_bench

LAYOUTS = ("aaaa", "caaa", "ccaa", "ccca", "cccc", "accc", "aacc", "aaac")


def study(smoke: bool) -> Study:
    return Study(
        name="table3",
        title="Table 3: conv vs attention per layer group (ResNet-50)",
        models=tuple("sasa50" if s == "aaaa" else f"sasa50:stages={s}" for s in LAYOUTS),
        paper_table="3",
        bench=default_bench(smoke),
        notes=("The paper's accuracies in this table are on a held-out 4 % of ImageNet train.",),
    )

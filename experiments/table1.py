"""Table 1: ResNet-26/38/50 as baseline, conv-stem + attention and full attention.

Command:  sasa-bench report table1 --device cuda --results imagenet-train.jsonl
          sasa-bench report table1 --smoke                  (part of the README's main job)
Run time: full, about 5 min of benchmarks on one H100 (9 models, batch 64, 224x224); accuracy
          comes from training records (--results). Smoke: about 1-2 min on a 2-core CPU
          (64x64, batch 2); the accuracy of the main job is the mnist5k study's.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
"""

from sasa_bench.report.study import Study, default_bench

MODELS = tuple(
    f"{family}{depth}{suffix}"
    for depth in (26, 38, 50)
    for family, suffix in (("resnet", ""), ("sasa", ""), ("sasa", "-full"))
)


def study(smoke: bool) -> Study:
    return Study(
        name="table1",
        title="Table 1: ImageNet classification, ResNet-26/38/50",
        models=MODELS,
        paper_table="1",
        bench=default_bench(smoke),
        layer_tables=True,
    )

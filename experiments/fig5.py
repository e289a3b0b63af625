"""Figure 5: width scaling, baseline against attention (ResNet-50; widths 0.5-1.5).

Command:  sasa-bench report fig5 --device cuda --results imagenet-train.jsonl
          sasa-bench report fig5 --smoke                    (part of the README's main job)
Run time: full, about 5 min of benchmarks on one H100 (10 models); accuracy from --results.
          Smoke: ResNet-26 at widths 0.125 / 0.25 / 0.5 trained on the embedded digits (6 short
          runs, about 2-3 min on a 2-core CPU) and benchmarked at 64x64.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
The paper plots this figure without printing its values: its points here are Table 1's.
"""

from sasa_bench.report.study import Study, Train, default_bench

FULL_WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5)
SMOKE_WIDTHS = (0.125, 0.25, 0.5)


def _models(depth: int, widths: tuple[float, ...]) -> tuple[str, ...]:
    return tuple(
        name if width == 1.0 else f"{name}:width={width:g}"
        for width in widths
        for name in (f"resnet{depth}", f"sasa{depth}")
    )


def study(smoke: bool) -> Study:
    models = _models(26, SMOKE_WIDTHS) if smoke else _models(50, FULL_WIDTHS)
    return Study(
        name="fig5",
        title="Figure 5: width scaling, baseline vs attention",
        models=models,
        paper_table="1" if not smoke else None,
        bench=default_bench(smoke),
        train=Train(models, overrides="") if smoke else None,
    )

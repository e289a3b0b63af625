"""The paper's claim at CPU scale: ResNet-26 against SASA-26 (conv stem, attention stem) and a
mixed net (conv in groups 1-2, attention in 3-4), trained on the embedded MNIST-5k.

Command:  sasa-bench report mnist5k --smoke           (part of the README's main job)
          sasa-bench report mnist5k --device cuda     (the same trainings on a GPU)
Run time: smoke, about 25 min on a 2-core CPU: 12 trainings (4 models x seeds 0, 1, 2, width
          0.25, 28x28, 3 epochs, one thread) and their benchmarks (1,524 s for the whole main
          job, idle, 2026-12-01).
Sized for: a 2-core CPU (smoke); the full run trains the same models on one GPU.

The paper's numbers (Table 1, ImageNet) sit beside ours in the table; the figures keep them in
panels of their own (one dataset per accuracy axis).
"""

from sasa_bench.report.study import Study, Train, default_bench

MODELS = ("resnet26", "sasa26", "sasa26-full", "sasa26:stages=ccaa")


def study(smoke: bool) -> Study:
    return Study(
        name="mnist5k",
        title="ResNet-26 against SASA-26 and a mixed net, trained on MNIST-5k",
        models=MODELS,
        paper_table="1",
        bench=default_bench(smoke),
        train=Train(MODELS, data="mnist5k"),
    )

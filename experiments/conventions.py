"""Which training convention moves accuracy, and by how much: SASA-26 and ResNet-26 on the
embedded MNIST-5k with one convention changed at a time (docs/models.md says where each
default comes from).

Command:  sasa-bench report conventions --smoke
Run time: smoke, about 45 min on a 2-core CPU: 21 trainings (7 models x seeds 0, 1, 2, width
          0.25, 28x28, 3 epochs, one thread), no benchmarks; 37 min where the main job's report
          folder (--out) already holds the sasa26 and resnet26 runs.
Sized for: a 2-core CPU (smoke); the full run trains the same models on one GPU.

Defaults: the last BatchNorm of each residual branch starts at gamma 0 (zero_init_last); q, k
and v initialised as three 1x1 convolutions (qkv_init=separate); Eq. 3 as written: zero-padded
border (padding=zero), no query scaling (qscale=none). Each other model changes one of them
(tensor2tensor's local attention would be padding=mask with qscale=rsqrt).
"""

from sasa_bench.report.study import Study, Train

MODELS = (
    "sasa26",
    "sasa26:zero_init_last=false",
    "sasa26:qkv_init=fused",
    "sasa26:padding=mask",
    "sasa26:qscale=rsqrt",
    "resnet26",
    "resnet26:zero_init_last=false",
)


def study(smoke: bool) -> Study:
    return Study(
        name="conventions",
        title="Training conventions, one at a time (SASA-26 and ResNet-26, MNIST-5k)",
        models=MODELS,
        train=Train(MODELS, data="mnist5k"),
    )

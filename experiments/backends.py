"""Attention backends and devices: kernels at the ResNet-50 stage shapes beside a 3x3 conv.

Command:  sasa-bench report backends --device cuda       (compare devices: add --results of
          bench records made on other machines; `sasa-bench compare` tabulates them too)
Run time: full, about 2 min on one H100 (3 backends x 4 shapes, fp32 and bf16, compile time of
          the Triton and Flex kernels included); smoke, under a minute on a 2-core CPU (small
          shapes; Triton and Flex are not timed on a CPU: interpreter / eager).
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
"""

from sasa_bench.report.study import Study


def study(smoke: bool) -> Study:
    return Study(
        name="backends",
        title="Attention backends against a 3x3 convolution",
        models=(),
        kernels=True,
        notes=(
            "The memory floor: reading q, k, v and writing the output once, at the copy "
            "bandwidth measured in the same run.",
        ),
    )

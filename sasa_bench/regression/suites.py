"""The checks a new baseline starts with (`--update-baseline` on a file that does not exist).

CPU (sized for a busy 2-core CI machine, well under a minute): the exact costs of every preset,
the reference attention over a 3x3 conv at small shapes (forward, and forward + backward) and
SASA-ResNet-26 over ResNet-26 at 32x32, timed in CPU time on one intra-op thread (wall time
counts the time other jobs preempt a call: a long call more often than a short one). Tolerance
50 % for the kernels, 25 % for the models: between processes on such a machine their ratios
moved by up to 1.30x and 1.06x (docs/regression.md).

CUDA: every preset's costs, each available backend over a cuDNN 3x3 conv at the ResNet-50
stage shapes (batch 32, bf16, channels-last, forward and training), and sasa50 over resnet50
at 224x224; 10 % tolerance.
"""

from __future__ import annotations

import torch

from sasa_bench.kernels.verify import available_backends
from sasa_bench.measure.kernels import SHAPES
from sasa_bench.models.registry import PRESETS
from sasa_bench.regression.baseline import Baseline, Settings, SpeedCheck


def default_baseline(device: str = "cpu") -> Baseline:
    costs = {name: {} for name in PRESETS}
    if torch.device(device).type == "cuda":
        return Baseline(_gpu_settings(device), costs, _gpu_checks())
    settings = Settings(
        device=device, threads=1, timer="thread-cpu", tolerance=0.5, repeats=15, inner=5, warmup=5
    )
    return Baseline(settings, costs, _cpu_checks())


def _kernel(impl: str, shape: tuple[int, int, int], batch: int, mode: str) -> SpeedCheck:
    label = "x".join(map(str, shape))
    return SpeedCheck(
        f"{impl}-{label}-b{batch}-{mode}",
        f"attention:{impl}",
        "conv3x3",
        shape=list(shape),
        batch=batch,
        mode=mode,
    )


def _models(a: str, b: str, resolution: int, batch: int, mode: str, impl: str) -> SpeedCheck:
    suffix = f":resolution={resolution}" if resolution != 224 else ""
    return SpeedCheck(
        f"{a}-over-{b}-{resolution}px-b{batch}-{mode}",
        f"model:{a}{suffix}",
        f"model:{b}{suffix}",
        batch=batch,
        mode=mode,
        attn_impl=impl,
    )


def _cpu_checks() -> list[SpeedCheck]:
    small, smaller = SHAPES["tiny"]
    models = _models("sasa26", "resnet26", 32, 2, "infer", "reference")
    models.tolerance = 0.25  # whole networks on both sides: the steadiest ratio (+-4 %)
    # Not the 14x14x32 forward: its ratio moved by up to 1.8x between processes on a loaded
    # 2-core machine (the attention's time alone did, in CPU time: memory placement).
    return [
        _kernel("reference", smaller, 8, "infer"),
        _kernel("reference", small, 4, "train"),
        models,
    ]


def _gpu_settings(device: str) -> Settings:
    return Settings(
        device=device,
        dtype="bf16",
        channels_last=True,
        tolerance=0.10,
        repeats=15,
        inner=10,
        warmup=5,
    )


def _gpu_checks() -> list[SpeedCheck]:
    backends = [name for name, reason in available_backends().items() if reason is None]
    checks = [
        _kernel(impl, shape, 32, mode)
        for impl in backends
        for shape in SHAPES["resnet50"]
        for mode in ("infer", "train")
    ]
    impl = "triton" if "triton" in backends else "reference"
    checks += [_models("sasa50", "resnet50", 224, 32, mode, impl) for mode in ("infer", "train")]
    return checks

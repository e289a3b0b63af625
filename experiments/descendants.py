"""SASA beside its descendants and a modern conv net: HaloNet, BoTNet, lambda networks, Swin,
ConvNeXt and ResNet-50 (timm's, built without weights), with every counter's cost and the
measured speed in eager PyTorch and in deployment runtimes.

Command:  sasa-bench report descendants --smoke     (CPU-sized)
          sasa-bench report descendants --device cuda
Run time: smoke, 4 min on a 2-core CPU shared with other work (9 models counted at their own
          input sizes, then timed at 64x64, batch 1, one thread, in eager, ONNX Runtime and
          OpenVINO; the first run exports each model once); full (10 models at 256x256, batch
          64, bf16 channels-last, eager and torch.compile): not yet run on a GPU.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
Needs:    pip install 'sasa-bench[timm,runtimes]' (the runtimes for the smoke run).
"""

from sasa_bench.report.study import Bench, Study

OURS = ("sasa26", "sasa26-full", "sasa50", "sasa50-full")
THEIRS = (
    "timm:halonet26t",
    "timm:botnet26t_256",
    "timm:lambda_resnet26t",
    "timm:swin_tiny_patch4_window7_224",
    "timm:convnext_tiny",
    "timm:resnet50",
)


def study(smoke: bool) -> Study:
    if smoke:
        # HaloNet's blocks of 8 need an 8x8 map at stage 4: it builds at 256x256 only
        models = OURS + tuple(m for m in THEIRS if m != "timm:halonet26t")
        bench = Bench("resolution=64", batch_size=1, warmup=1, iters=5, max_time_s=1.0,
                      runtimes=("eager", "onnxruntime", "openvino"))  # fmt: skip
    else:
        models = OURS + THEIRS
        bench = Bench("resolution=256", batch_size=64, dtype="bf16", channels_last=True,
                      runtimes=("eager", "compile"))  # fmt: skip
    notes = [
        "Costs are counted at each model's own input size (224x224; HaloNet, BoTNet and the "
        "lambda ResNet 256x256) by the four traced counters; speed is measured at the bench "
        "plan's size for all."
    ]
    if smoke:
        notes.append("timm:halonet26t is counted and timed in the full study only: its "
                     "attention blocks of 8 pixels need 256x256 inputs.")  # fmt: skip
    return Study(
        name="descendants",
        title="SASA beside HaloNet, BoTNet, lambda networks, Swin, ConvNeXt and ResNet-50",
        models=models,
        bench=bench,
        counters=True,
        baseline="timm:resnet50",
        notes=tuple(notes),
    )

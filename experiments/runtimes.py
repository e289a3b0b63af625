"""What a deployment runtime does to each family: every model in eager PyTorch, ONNX Runtime
and OpenVINO (CPU) or torch.compile, ONNX Runtime and TensorRT (GPU), as ratios to eager and to
ResNet-26 in the same runtime.

Command:  sasa-bench report runtimes --smoke        (CPU-sized)
          sasa-bench report runtimes --device cuda
Run time: smoke, 2 min on a 2-core CPU (4 models at 64x64, batch 8, one thread; the first run
          exports each model once); full (fp16, batch 64): not yet run on a GPU.
Sized for: one NVIDIA H100 (full); a 2-core CPU (smoke).
Needs:    pip install 'sasa-bench[timm,runtimes]' (onnxruntime-gpu and TensorRT for the full run).
"""

from sasa_bench.report.study import Bench, Study


def study(smoke: bool) -> Study:
    models = ("resnet26", "sasa26", "sasa26-full", "timm:convnext_tiny")
    if smoke:
        bench = Bench("resolution=64", batch_size=8, warmup=1, iters=5, max_time_s=1.0,
                      runtimes=("eager", "onnxruntime", "openvino"))  # fmt: skip
    else:  # exported runtimes take no bf16 and choose their own layout: fp16, contiguous
        bench = Bench(batch_size=64, dtype="fp16",
                      runtimes=("eager", "compile", "onnxruntime", "tensorrt"))  # fmt: skip
    return Study(
        name="runtimes",
        title="Deployment runtimes: what each does to convolutions and to local attention",
        models=models,
        bench=bench,
        baseline="resnet26",
        notes=(
            "Each exported runtime runs the ONNX file exported once per model and shape; SASA's "
            "attention op reaches ONNX through the translation docs/runtimes.md measures.",
        ),
    )

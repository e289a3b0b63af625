#!/usr/bin/env bash
# Every GPU check of the attention kernels and the models in one call (estimated at 6-9 minutes
# on an H100, compile and autotune included; an estimate: it has not been timed). From the
# repository root, no install needed:
#
#     OUT=/path/to/results bash tools/gpu_checks.sh
#
# 1. correctness of every backend on the GPU, fp32/bf16/fp16, forward and gradients;
# 2. the kernels at ResNet-50's stage shapes beside a cuDNN 3x3 conv, with the memory floor and
#    the tiles the autotuner chose (table, and JSON in $OUT);
# 3. ResNet-50 against SASA ResNet-50 with the Triton backend (bf16, channels-last, batch 64),
#    inference and training, and the kernel targets as measured ratios;
# 4. FlexAttention's check and bench, last (its compilation is slow).
# Each step's output is kept in $OUT whatever the next step does.
set -uo pipefail
OUT=${OUT:-reports/gpu}
mkdir -p "$OUT"
export COLUMNS=220 PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
cli() { python3 -c 'import sys; from sasa_bench.cli import main; sys.exit(main())' "$@"; }

# at most 8 result files: check.txt, kernels.json, kernels.txt, models.txt and the three of
# gpu_resnet50_vs_sasa50.py
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.limit --format=csv | tee "$OUT/check.txt"
# the default tile (no autotuning: a few compiles per shape); every tile's logic is tested on CPU
SASA_TRITON_AUTOTUNE=0 cli kernels --check --device cuda --impl reference,unfold,triton \
    --dtype fp32,bf16,fp16 2>&1 | tee -a "$OUT/check.txt"
cli kernels --bench --device cuda --impl reference,unfold,triton --json \
    >"$OUT/kernels.json" 2>"$OUT/kernels.txt"
python3 - "$OUT/kernels.json" <<'PY' | tee -a "$OUT/kernels.txt"
import json, sys
report = json.load(open(sys.argv[1]))
print(f"copy bandwidth {report['copy_gb_per_s']:.0f} GB/s")
print("backend | shape | fwd ms | x floor | x conv fwd | fwd+bwd ms | conv fwd+bwd ms | peak B")
for r in report["rows"]:
    cells = [r["backend"], r["shape"], r["forward_ms"], r["floor_ratio"], r["conv_ratio"],
             r["forward_backward_ms"], r["conv_forward_backward_ms"], r["peak_memory_bytes"]]
    print(" | ".join("-" if c is None else f"{c:.3f}" if isinstance(c, float) else str(c)
                     for c in cells), "|", r["note"] or "")
PY
python3 tools/gpu_resnet50_vs_sasa50.py --out-dir "$OUT" --iters 30 --warmup 5 --attn-impl triton \
    2>&1 | tee "$OUT/models.txt"
# last, as time allows: FlexAttention compiles for minutes (a kill here loses nothing above)
cli kernels --check --device cuda --impl flex --dtype bf16 2>&1 | tee -a "$OUT/check.txt"
cli kernels --bench --device cuda --impl flex,triton 2>&1 | tee -a "$OUT/kernels.txt"

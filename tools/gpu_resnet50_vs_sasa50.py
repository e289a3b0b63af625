"""ResNet-50 against SASA ResNet-50 on one GPU: bf16 autocast, channels-last, batch 64,
inference and training (forward + backward + SGD step): images/s, latency, peak memory and
joules per image; then the kernel targets as measured ratios (sasa50 / resnet50:
inference >= 0.5x images/s, training >= 0.35x, peak memory <= 1.5x), and the measured per-layer
times of sasa50's forward.

    python3 tools/gpu_resnet50_vs_sasa50.py [--out-dir reports] [--iters 50] [--warmup 10]
        [--attn-impl triton[,reference,...]]
    python3 tools/gpu_resnet50_vs_sasa50.py --smoke --out-dir /tmp/out    # CPU, 32x32, batch 2

Sized for one H100 80 GB: about 3-5 minutes (two measurements per model and backend, each in
its own subprocess, then one per-layer pass). Needs torch with CUDA, rich, pandas and
nvidia-ml-py; sasa_bench runs from this checkout (no install needed). Writes, named by environment:

    OUT_DIR/bench-<gpu>-torch<version>-bf16amp-nhwc-b64.jsonl    one record per measurement
    OUT_DIR/bench-<gpu>-torch<version>-bf16amp-nhwc-b64.md       compare tables (Markdown)
    OUT_DIR/layers-<gpu>-torch<version>-bf16-nhwc-b64-sasa50.json per-layer measured times
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

import torch  # noqa: E402

from sasa_bench.cli import main as sasa_bench  # noqa: E402
from sasa_bench.measure.layers import layer_latency_rows  # noqa: E402
from sasa_bench.records import load_records  # noqa: E402

METRICS = (
    "images_per_s",
    "median_ms",
    "peak_allocated_bytes",
    "peak_rss_bytes",
    "joules_per_image",
)


def environment_name(device: str) -> str:
    version = torch.__version__.split("+")[0]
    if device == "cpu":
        return f"cpu-smoke-torch{version}"
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script needs a GPU (--smoke runs it on CPU)")
    gpu = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")
    return f"{gpu}-torch{version}"


def quote(record) -> str:
    """One line with the numbers a closing note quotes, straight from the record."""
    m, c = record.metrics, record.config
    if record.status != "ok":
        return f"{record.model} {c['mode']}: FAILED {record.error}"

    def num(key: str, scale: float = 1.0, fmt: str = ".3f") -> str:
        value = m.get(key)
        return "-" if value is None else format(value / scale, fmt)

    return (
        f"{record.env.get('gpu') or record.env.get('cpu')} | {record.model} {c['mode']} "
        f"batch {m['batch_size']} (asked {c['batch_size']}): {num('images_per_s', fmt='.1f')} "
        f"images/s, {num('median_ms', fmt='.2f')} ms/batch (IQR {num('iqr_ms', fmt='.2f')}), "
        f"peak {num('peak_allocated_bytes', 2**30, '.2f')} GiB allocated, "
        f"{num('joules_per_image')} J/image, power {num('power_mean_w', fmt='.0f')} W, "
        f"SM {num('sm_clock_mean_mhz', fmt='.0f')} MHz, throttle {m.get('throttle_reasons')}; "
        f"notes: {m.get('notes')}"
    )


#: the kernel targets: (mode, metric, bound, at least?) for sasa50 / resnet50
TARGETS = (
    ("infer", "images_per_s", 0.5, True),
    ("train", "images_per_s", 0.35, True),
    ("infer", "peak_allocated_bytes", 1.5, False),
    ("train", "peak_allocated_bytes", 1.5, False),
)


def targets(records, models) -> list[str]:
    """sasa50 / resnet50 per mode, metric and sasa50 backend, from this run's records."""
    found = {}
    for r in records:
        if r.status == "ok":
            impl = r.config.get("attn_impl") if r.model == models[1] else None
            found[(r.model, r.config["mode"], impl)] = r.metrics
    lines = ["targets (sasa50 / resnet50, measured in this run):"]
    impls = sorted({impl for model, _, impl in found if model == models[1]})
    for impl in impls:
        for mode, metric, bound, at_least in TARGETS:
            base = found.get((models[0], mode, None), {}).get(metric)
            ours = found.get((models[1], mode, impl), {}).get(metric)
            if not base or ours is None:
                lines.append(f"  {impl:9s} {mode:5s} {metric:22s} not measured")
                continue
            ratio = ours / base
            met = ratio >= bound if at_least else ratio <= bound
            sign = ">=" if at_least else "<="
            verdict = "met" if met else "NOT met"
            lines.append(
                f"  {impl:9s} {mode:5s} {metric:22s} {ratio:6.3f}x (target {sign} {bound}x): "
                f"{verdict}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=str(ROOT / "reports"))
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="CPU, 32x32, batch 2, 2 iters")
    parser.add_argument("--attn-impl", default="triton", help="sasa50's backends, comma list")
    args = parser.parse_args()
    device, batch, options = ("cpu", 2, ":resolution=32") if args.smoke else ("cuda", 64, "")
    iters, warmup = (2, 1) if args.smoke else (args.iters, args.warmup)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = environment_name(device)
    stem = out_dir / f"bench-{name}-bf16amp-nhwc-b{batch}"
    models = [f"resnet50{options}", f"sasa50{options}"]
    common = ["--device", device, "--dtype", "bf16", "--amp", "--channels-last"]
    common += ["--batch-size", str(batch), "--mode", "infer,train", "--warmup", str(warmup)]
    common += ["--iters", str(iters), "--timeout", "600", "--out", f"{stem}.jsonl"]
    code = sasa_bench(["bench", models[0], *common])
    code |= sasa_bench(["bench", models[1], *common, "--attn-impl", args.attn_impl])
    if code:
        print("(a measurement failed: it is in the table above and in the records)")

    tables = []
    for metric in METRICS:
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            sasa_bench(
                ["compare", f"{stem}.jsonl", "--by", "model", "--baseline", models[0]]
                + ["--metric", metric, "--format", "markdown"]
            )
        tables.append(f"{metric}\n\n{text.getvalue()}")
    Path(f"{stem}.md").write_text("\n".join(tables))
    print("\n".join(tables))
    records = load_records(f"{stem}.jsonl")
    for record in records:
        print(quote(record))
    print()
    for line in targets(records, models):
        print(line)

    impl = args.attn_impl.split(",")[0]
    rows = layer_latency_rows(
        models[1],
        device=device,
        batch_size=batch,
        dtype="bf16",
        channels_last=True,
        attn_impl=impl,
        iters=10,
    )
    layers = out_dir / f"layers-{name}-bf16-nhwc-b{batch}-sasa50.json"
    layers.write_text(json.dumps(rows, indent=1))
    print(f"\n{models[1]} ({impl}) forward, slowest layers (of {len(rows)}; all in {layers}):")
    for row in sorted(rows, key=lambda r: -r["time_ms"])[:12]:
        rate = "-" if row["flops_per_s"] is None else f"{row['flops_per_s'] / 1e12:.2f}"
        print(
            f"  {row['name']:26s} {row['type']:6s} {row['time_ms']:8.3f} ms "
            f"{100 * row['time_share']:5.1f}%  {rate} TFLOP/s  "
            f"peak +{row['peak_memory_bytes'] / 2**20:.1f} MiB"
        )
    print(f"records: {stem}.jsonl")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

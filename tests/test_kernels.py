"""Attention backends: correctness against float64 (CPU: Triton in its interpreter), model-level
agreement, FLOP counting through every backend, the kernels CLI."""

import json

import pytest
import torch

from sasa_bench import kernels
from sasa_bench.analysis.complexity import model_cost
from sasa_bench.analysis.flops import COUNTERS, run_counter
from sasa_bench.cli import main
from sasa_bench.kernels.check import check_backend
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import build_model, set_attention_impl

EXACT = [name for name, b in kernels.BACKENDS.items() if b.exact and b.unavailable() is None]
TINY = "sasa26:width=0.25,resolution=32,stages=caaa,heads=2,k=3"


def test_every_exact_backend_is_available_here():
    assert EXACT == ["reference", "unfold", "flex", "triton"]


def test_kernels_check_passes_for_every_backend_fp32_and_bf16(capsys):
    code = main(["kernels", "--check", "--device", "cpu", "--dtype", "fp32,bf16", "--json"])
    results = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {(r["backend"], r["dtype"]) for r in results} == {
        (b, d) for b in EXACT for d in ("fp32", "bf16")
    }
    assert all(r["ok"] for r in results)
    triton = [r for r in results if r["backend"] == "triton"]
    assert all(r["errors"]["dq"] is not None and r["errors"]["dv"] is not None for r in triton)


def broken(q, k, v, rel, kernel_size, heads):
    """The reference without the q.r logits: what a wrong kernel looks like."""
    return kernels.reference.attention(q, k, v, None, kernel_size, heads)


def test_check_catches_a_wrong_backend(monkeypatch, capsys):
    backend = kernels.Backend("broken", __name__, exact=True, description="", forward_name="broken")
    monkeypatch.setitem(kernels.BACKENDS, "broken", backend)
    results = check_backend("broken", torch.device("cpu"), "fp32")
    assert not any(r.ok for r in results if "qr" in r.case)
    assert main(["kernels", "--check", "--impl", "broken", "--dtype", "fp32"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.parametrize("impl", ["unfold", "flex", "triton"])
def test_same_model_same_outputs_with_every_exact_backend(impl):
    model = build_model(parse_model(TINY).spec).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        set_attention_impl(model, impl)
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_triton_backend_trains_like_the_reference():
    # eval: batch norm over a 2-image batch at 1x1 maps would amplify rounding chaotically
    model = build_model(parse_model(TINY).spec).eval()
    x = torch.randn(2, 3, 32, 32)
    grads = {}
    for impl in ("reference", "triton"):
        set_attention_impl(model, impl)
        model.zero_grad()
        model(x).square().mean().backward()
        grads[impl] = [p.grad.clone() for p in model.parameters()]
    # Relative to the largest gradient: layers with a saturated softmax have gradients near zero,
    # made of cancelling terms, where fp32 rounding is large relative to the layer's own scale.
    scale = max(g.abs().max() for g in grads["reference"])
    for ours, ref in zip(grads["triton"], grads["reference"], strict=True):
        assert (ours - ref).abs().max() <= 1e-3 * scale


@pytest.mark.parametrize("impl", EXACT)
def test_flop_counting_sees_attention_through_every_backend(impl):
    spec = parse_model(TINY).spec
    model = build_model(spec, attn_impl=impl).eval()
    cost = model_cost(spec)
    for counter in COUNTERS:
        result = run_counter(counter, model, torch.randn(1, 3, 32, 32))
        assert abs(result.macs - cost.macs) <= 1e-3 * cost.macs, (counter, result.note)
        assert result.note is None or "counted with the reference attention" in result.note


def test_kernels_list_and_bench_on_cpu(capsys):
    assert main(["kernels", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(kernels.BACKENDS) and listed["triton"]["exact"]
    argv = [
        "kernels",
        "--bench",
        "--device",
        "cpu",
        "--shapes",
        "tiny",
        "--batch",
        "1",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--json",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["copy_gb_per_s"] > 0
    rows = {(r["backend"], r["shape"]): r for r in report["rows"]}
    ref = rows[("reference", "14x14x32")]
    assert ref["forward_ms"] > 0 and ref["forward_backward_ms"] > 0 and ref["conv_forward_ms"] > 0
    assert ref["floor_bytes"] == 4 * 14 * 14 * 32 * 4
    assert ref["floor_ratio"] == pytest.approx(ref["forward_ms"] / ref["floor_ms"])
    assert "interpreter" in rows[("triton", "7x7x64")]["note"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["kernels", "--check", "--impl", "nope"], "unknown backend 'nope'"),
        (["kernels", "--check", "--dtype", "fp8"], "unknown dtype 'fp8'"),
        (["kernels", "--bench", "--device", "cuda"], "sees no CUDA device"),
        (["kernels", "--bench", "--device", "tpu"], "device 'tpu'"),
    ],
)
def test_kernels_bad_input(capsys, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(argv) == 2
    assert message in capsys.readouterr().err

"""Attention backends: correctness against float64 (CPU: Triton in its interpreter), model-level
agreement, FLOP counting through every backend, the kernels CLI."""

import json

import pytest
import torch

from sasa_bench import kernels
from sasa_bench.cli import main
from sasa_bench.counters import COUNTERS, run_counter
from sasa_bench.kernels import reference, triton_window
from sasa_bench.kernels.verify import verify_backend
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import build_model, model_cost, set_attention_impl

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


def broken(q, k, v, rel, kernel_size, heads, padding="zero", scale=1.0):
    """The reference without the q.r logits: what a wrong kernel looks like."""
    return kernels.reference.attention(q, k, v, None, kernel_size, heads, padding, scale)


def test_check_catches_a_wrong_backend(monkeypatch, capsys):
    backend = kernels.Backend("broken", __name__, exact=True, description="", forward_name="broken")
    monkeypatch.setitem(kernels.BACKENDS, "broken", backend)
    results = verify_backend("broken", torch.device("cpu"), "fp32")
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
        (["kernels", "--sass", "--head-dims", "8,x"], "argument --head-dims: expected integers"),
        (["kernels", "--sass", "--dtype", "fp32,bf16"], "--sass takes one --dtype"),
    ],
)
def test_kernels_bad_input(capsys, argv, message):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    try:
        code = main(argv)
    except SystemExit as exit_:  # a bad flag value: argparse's one line
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def eq3_pixel(q, k, v, rel, b, h, i, j, kernel_size, heads, padding, scale):
    """Eq. 3 for head h of pixel (i, j) of image b, in float64: (output (d,), log-sum-exp).
    The window's positions outside the image are zero keys and values inside the softmax
    ("zero") or are skipped ("mask")."""
    _, channels, height, width = q.shape
    d, pad = channels // heads, kernel_size // 2
    c = slice(h * d, (h + 1) * d)
    query = q[b, c, i, j]
    logits, values = [], []
    for dy in range(kernel_size):
        for dx in range(kernel_size):
            y, x = i + dy - pad, j + dx - pad
            inside = 0 <= y < height and 0 <= x < width
            if not inside and padding == "mask":
                continue
            zero = torch.zeros(d, dtype=torch.float64)
            key = k[b, c, y, x] if inside and k is not None else zero
            logit = query @ key
            if rel is not None:
                logit = logit + query @ rel[h, :, dy * kernel_size + dx]
            logits.append(scale * logit)
            values.append(v[b, c, y, x] if inside else zero)
    logits = torch.stack(logits)
    out = (torch.softmax(logits, dim=0)[:, None] * torch.stack(values)).sum(0)
    return out, torch.logsumexp(logits, dim=0)


def eq3_by_loops(q, k, v, rel, kernel_size, heads, padding, scale):
    """Eq. 3 pixel by pixel, head by head: (out (B, C, H, W), lse (B, heads, H, W))."""
    batch, channels, height, width = q.shape
    d = channels // heads
    out = torch.zeros(batch, channels, height, width, dtype=torch.float64)
    lse = torch.zeros(batch, heads, height, width, dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            for i in range(height):
                for j in range(width):
                    found = eq3_pixel(q, k, v, rel, b, h, i, j, kernel_size, heads, padding, scale)
                    out[b, h * d : (h + 1) * d, i, j], lse[b, h, i, j] = found
    return out, lse


@pytest.mark.parametrize("padding", kernels.PADDINGS)
@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize(
    "height, width, kernel_size, keys",
    [(4, 3, 3, True), (4, 3, 5, True), (4, 4, 7, True), (3, 4, 3, False)],
)
def test_reference_is_eq3_computed_pixel_by_pixel(padding, scale, height, width, kernel_size, keys):
    generator = torch.Generator().manual_seed(0)

    def draw(*size):
        return torch.randn(*size, generator=generator, dtype=torch.float64)

    batch, channels, heads = 2, 4, 2
    q, k, v = (draw(batch, channels, height, width) for _ in range(3))
    k = k if keys else None
    rel = draw(heads, channels // heads, kernel_size**2)
    expected, expected_lse = eq3_by_loops(q, k, v, rel, kernel_size, heads, padding, scale)
    out, lse = reference.attention(q, k, v, rel, kernel_size, heads, padding, scale)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(lse.double(), expected_lse, rtol=0, atol=1e-6)  # lse is fp32
    through_op = kernels.window_attention(
        q, k, v, rel, kernel_size, heads, "reference", padding, scale
    )
    torch.testing.assert_close(through_op, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", ["reference", "unfold"])
def test_masked_scaled_attention_passes_gradcheck(impl):
    generator = torch.Generator().manual_seed(1)
    batch, channels, height, width, heads, kernel_size = 1, 4, 3, 4, 2, 3
    q, k, v = (
        torch.randn(batch, channels, height, width, generator=generator, dtype=torch.float64)
        for _ in range(3)
    )
    rel = torch.randn(heads, channels // heads, kernel_size**2, generator=generator)
    inputs = [t.double().requires_grad_(True) for t in (q, k, v, rel)]

    def core(q, k, v, rel):
        return kernels.window_attention(
            q, k, v, rel, kernel_size, heads, impl, padding="mask", scale=0.7
        )

    assert torch.autograd.gradcheck(core, inputs)


@pytest.mark.parametrize("impl", EXACT)
def test_masked_positions_get_zero_probability(impl):
    """q = 0: every logit is 0, so each query averages the values its softmax admits. With the
    mask the corner of a 3x3 map with k = 3 sees its 4 inside pixels; with zero padding it sees
    9 positions, 5 of them zero values. The centre sees all 9 pixels either way."""
    v = torch.randn(1, 2, 3, 3)
    q, k = torch.zeros_like(v), torch.randn_like(v)
    rel = torch.randn(1, 2, 9)
    corner = v[0, :, :2, :2].sum((1, 2))
    with torch.no_grad():
        masked = kernels.window_attention(q, k, v, rel, 3, 1, impl, padding="mask", scale=0.5)
        zero = kernels.window_attention(q, k, v, rel, 3, 1, impl, padding="zero", scale=0.5)
    torch.testing.assert_close(masked[0, :, 0, 0], corner / 4)
    torch.testing.assert_close(zero[0, :, 0, 0], corner / 9)
    for out in (masked, zero):
        torch.testing.assert_close(out[0, :, 1, 1], v[0].mean((1, 2)))


def test_scale_is_scaling_q():
    generator = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 8, 5, 6, generator=generator, dtype=torch.float64) for _ in "qkv")
    rel = torch.randn(2, 4, 9, generator=generator, dtype=torch.float64)
    for padding in kernels.PADDINGS:
        scaled, _ = reference.attention(q, k, v, rel, 3, 2, padding, 0.3)
        expected, _ = reference.attention(0.3 * q, k, v, rel, 3, 2, padding)
        torch.testing.assert_close(scaled, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", EXACT)
def test_unknown_padding_is_refused(impl):
    q = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="unknown padding 'reflect'; choose one of: zero, mask"):
        kernels.window_attention(q, q, q, None, 3, 1, impl, padding="reflect")
    forward, _ = kernels.get_backend(impl).load()
    with pytest.raises(ValueError, match="choose one of: zero, mask"):
        forward(q, q, q, None, 3, 1, padding="reflect")


def _reference_grads(q, k, v, rel, grad, kernel_size, heads, padding="zero", scale=1.0):
    inputs = [t.double().detach().requires_grad_(True) for t in (q, k, v, rel)]
    out, _ = reference.attention(*inputs, kernel_size, heads, padding, scale)
    out.backward(grad.double())
    return out, [t.grad for t in inputs]


@pytest.mark.parametrize(
    "tile, channels_last, padding",
    [
        (tile, i % 2 == 1, kernels.PADDINGS[i // 2 % 2])
        for i, tile in enumerate(triton_window.TILES)
    ],
)
def test_every_triton_tile_is_exact(tile, channels_last, padding):
    """Every configuration the autotuner may pick on a GPU, here in the interpreter: tiles larger
    than the map, maps that are not a multiple of the tile, channel slices of one channels-last
    q/k/v tensor (the fused projection's output), both padding modes (masked with the 1/sqrt(d)
    scale)."""
    batch, channels, height, width, heads, kernel_size = 1, 16, 9, 11, 2, 5
    scale = (channels // heads) ** -0.5 if padding == "mask" else 1.0
    qkv = torch.randn(batch, 3 * channels, height, width)
    if channels_last:
        qkv = qkv.to(memory_format=torch.channels_last)
    q, k, v = qkv.split(channels, dim=1)
    rel = torch.randn(heads, channels // heads, kernel_size**2)
    grad = torch.randn(batch, channels, height, width)
    options = (kernel_size, heads, padding, scale)
    out, lse = triton_window.forward(q, k, v, rel, *options, tile=tile)
    assert (out.stride(1) == 1) == channels_last  # the output keeps the input's layout
    grads = triton_window.backward(q, k, v, rel, out, lse, grad, *options, tile=tile)
    expected, expected_grads = _reference_grads(q, k, v, rel, grad, *options)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    for name, ours, ref in zip(("dq", "dk", "dv", "drel"), grads, expected_grads, strict=True):
        torch.testing.assert_close(ours.double(), ref, rtol=1e-4, atol=1e-4, msg=name)


def _has_ptxas() -> bool:
    try:
        from sasa_bench.kernels.sass import _tool

        _tool("ptxas")
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _has_ptxas(), reason="this Triton ships no ptxas")
def test_triton_kernels_compile_for_h100_to_vector_loads_without_spills():
    """The machine code the GPU would run, compiled here for sm_90: in the models' layout
    (channels-last slices, bf16) every tile the autotuner may time loads whole 16-byte vectors
    (no 2-byte scalar loads), the forward does not spill, and its window loop's issue cost is
    bounded. The NCHW layout, where a pixel's channels are far apart, is the control: there the
    same counter finds scalar loads."""
    from sasa_bench.kernels.sass import inspect_in_subprocess

    rows = inspect_in_subprocess((8, 64))
    assert {(r["kernel"], r["head_dim"]) for r in rows} == {
        (k, d) for k in ("_fwd_kernel", "_bwd_q_kernel", "_bwd_kv_kernel") for d in (8, 64)
    }
    assert all(r["registers"] > 0 and r["LDG"] > 0 and r["MUFU"] > 0 for r in rows)
    assert all(r["scalar_loads"] == 0 for r in rows)
    forward = [r for r in rows if r["kernel"] == "_fwd_kernel"]
    assert all(r["spill_bytes"] == 0 for r in forward)
    for d, most in ((8, 4.0), (64, 30.0)):
        # some tile gives each thread whole 16-byte pixels
        assert max(r["widest_load_bits"] for r in forward if r["head_dim"] == d) == 128
        # and the window loop's issue cost per pixel and offset stays bounded (2.7 and 21 warp
        # instructions at d = 8 and 64; a 1x64 raster tile with scalar loads costs 17.6 at d = 8)
        costs = [r["warp_instructions_per_pixel_offset"] for r in forward if r["head_dim"] == d]
        assert all(cost > 0 for cost in costs) and min(costs) <= most
    control = inspect_in_subprocess((8,), channels_last=False)
    assert all(r["scalar_loads"] > 0 for r in control if r["kernel"] == "_fwd_kernel")


def tuner_tiles(tuner):
    return [(c.kwargs["TILE_H"], c.kwargs["TILE_W"], c.num_warps) for c in tuner.configs]


@pytest.mark.parametrize("head_dim", [2, 8, 16, 32, 64, 128, 256])
def test_the_autotuner_times_exactly_the_candidates_that_fit(head_dim):
    """The CUDA autotuners' pruning (run here on their configs, as Triton calls it before
    timing): at every head dim some tiles remain, and they are the candidates."""
    for kernel, tuner in triton_window._TUNED.items():
        kept = tuner.early_config_prune(tuner.configs, {"D": head_dim})
        tiles = [(c.kwargs["TILE_H"], c.kwargs["TILE_W"], c.num_warps) for c in kept]
        assert set(tiles) <= set(tuner_tiles(tuner))
        assert tiles and tiles == triton_window.candidates(kernel, head_dim)
        if kernel is triton_window._bwd_q_kernel:  # its grid is fixed by the d rel partials
            assert all(t[:2] == triton_window.q_tile(head_dim) for t in tiles)
        budget = triton_window.BUDGET[kernel.fn.__name__]
        fitting = [t for t in tiles if triton_window.fits(t, head_dim, budget)]
        if fitting:
            assert fitting == tiles
        else:  # the one nearest the range: most elements per thread if all have too few
            assert len(tiles) == 1
            elements = triton_window.per_thread(tiles[0], head_dim)
            others = [triton_window.per_thread(t, head_dim) for t in tuner_tiles(tuner)]
            assert elements == (max(others) if elements < 4 else min(others))


def test_flex_retries_smaller_blocks_where_a_config_does_not_fit_shared_memory(monkeypatch):
    """The compiled FlexAttention can fail to find a kernel configuration that fits shared
    memory: the next, smaller, kernel options are tried, and the one that worked is kept."""
    from sasa_bench.kernels import flex

    tried = []

    def fake_flex(*args, kernel_options=None, **kwargs):
        tried.append(kernel_options)
        if kernel_options is None:
            raise RuntimeError("No valid triton configs. OutOfResources: out of resource: shared")
        return "out", "lse"

    monkeypatch.setattr(flex, "_WORKING_OPTIONS", {})
    assert flex._run(fake_flex, "shape") == ("out", "lse")
    assert tried == [None, flex.KERNEL_OPTIONS[1]]
    assert flex._run(fake_flex, "shape") == ("out", "lse")  # remembered: no second failure
    assert tried[2:] == [flex.KERNEL_OPTIONS[1]]

    def broken(*args, kernel_options=None, **kwargs):
        raise ValueError("a bug, not a resource limit")

    with pytest.raises(ValueError, match="a bug"):  # other errors are not swallowed
        flex._run(broken, "other")

    def never_fits(*args, kernel_options=None, **kwargs):
        raise RuntimeError("out of resource: shared memory")

    with pytest.raises(RuntimeError, match="shared memory"):  # the last options' error stands
        flex._run(never_fits, "third")

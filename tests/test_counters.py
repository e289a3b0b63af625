"""Every traced counter agrees with the analytic count: totals and layer by layer."""

import importlib
import importlib.util
import sys

import pytest
import torch
from conftest import ALL_MODELS
from torch import nn

from sasa_bench.cli import main
from sasa_bench.counters import COUNTERS, parse_counters, run_counter
from sasa_bench.errors import SasaBenchError
from sasa_bench.layers.sasa import SASA2d
from sasa_bench.layers.stem import AttentionStem
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import build_model, model_cost
from sasa_bench.models.thirdparty import import_source


class Wrap(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize(
    "pos, logits, stride",
    [
        ("relative", "qk+qr", 1),
        ("relative", "qk+qr", 2),
        ("none", "qk+qr", 1),
        ("absolute", "qk+qr", 2),
        ("relative", "qr", 1),
    ],
)
def test_single_sasa_layer_counts_match_the_formula(counter, pos, logits, stride):
    c_in, c_out, k, height, width = 16, 32, 5, 6, 7
    layer = SASA2d(
        c_in, c_out, kernel_size=k, heads=4, pos=pos, logits=logits, stride=stride,
        feature_size=(height, width),
    )  # fmt: skip
    projections = 3 if logits == "qk+qr" else 2
    products = 1 + (logits == "qk+qr") + (pos == "relative")  # q.k, q.r, attn.v
    expected = height * width * (projections * c_in * c_out + products * k * k * c_out)
    result = run_counter(counter, Wrap(layer), torch.randn(1, c_in, height, width))
    assert result.note is None
    assert result.macs == expected
    assert result.layers["layer"] == expected


@pytest.mark.parametrize("counter", COUNTERS)
@pytest.mark.parametrize("values", ["spatial", "plain", "conv"])
def test_single_attention_stem_counts_match_the_formula(counter, values):
    c_out, mixtures, side = 16, 2, 8
    stem = AttentionStem(3, c_out, heads=2, values=values, mixtures=mixtures)
    value_macs = {
        "spatial": mixtures * 3 * c_out + mixtures * c_out,
        "plain": 3 * c_out,
        "conv": 4 * 4 * 3 * c_out,
    }[values]
    # q and k projections; q.k, q.r and attn.v over the 16 pixels of each 4x4 block; values
    expected = side * side * (2 * 3 * c_out + 3 * 16 * c_out + value_macs)
    result = run_counter(counter, Wrap(stem), torch.randn(1, 3, side, side))
    assert result.note is None
    # Stated difference: p(a,b,m) of the spatially-aware values is computed once per forward
    # (16 positions x m mixtures x embedding width), whatever the batch; the analytic per-image
    # count leaves it out, the dispatch counters see it.
    batch_independent = 16 * mixtures * c_out if values == "spatial" else 0
    assert expected <= result.macs <= expected + 2 * batch_independent
    assert result.layers["layer.attn"] == result.macs


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_counter_agrees_with_analytic_totals_and_per_layer(name):
    spec = parse_model(f"{name}{',' if ':' in name else ':'}resolution=32").spec
    cost = model_cost(spec)
    model = build_model(spec).eval()
    x = torch.randn(1, 3, 32, 32)
    for counter in COUNTERS:
        result = run_counter(counter, model, x)
        assert result.note is None, result.note
        assert abs(result.macs - cost.macs) <= 0.01 * cost.macs, counter
        for layer in cost.layers:
            counted = result.layers.get(layer.name, 0)
            assert abs(counted - layer.macs) <= 0.01 * layer.macs, (counter, layer.name)


def test_without_handlers_the_counters_miss_exactly_the_attention_products():
    spec = parse_model("sasa26:resolution=64").spec
    cost = model_cost(spec)
    products = 0
    for layer in cost.layers:
        if layer.type == "sasa":
            c, h, w = layer.in_shape  # mixer input = its width at the attention resolution
            products += 3 * 49 * c * h * w  # q.k, q.r, attn.v
    result = run_counter("torch", build_model(spec), torch.randn(1, 3, 64, 64), handlers=False)
    assert result.macs == cost.macs - products


def test_parse_counters():
    assert parse_counters("all") == ["analytic", *COUNTERS]
    assert parse_counters("torch,ptflops") == ["torch", "ptflops-aten", "ptflops-pytorch"]
    with pytest.raises(SasaBenchError, match="unknown counter 'thop'"):
        parse_counters("torch,thop")


def test_missing_library_gives_a_note_and_the_other_counters(monkeypatch, capsys):
    for module in ["fvcore", *(m for m in sys.modules if m.startswith("fvcore."))]:
        monkeypatch.setitem(sys.modules, module, None)  # import fvcore(.nn) -> ImportError
    code = main(["profile", "sasa26", "--resolution", "32", "--counters", "all"])
    out = capsys.readouterr().out
    assert code == 0
    assert "note: fvcore is not installed (pip install 'sasa-bench[counters]')" in out
    assert "torch MACs" in out and "ptflops-pytorch MACs" in out and "fvcore MACs" not in out


def test_profile_json_counters(capsys):
    import json

    code = main(
        [
            "profile",
            "sasa26-full",
            "--resolution",
            "32",
            "--counters",
            "analytic,torch",
            "--group",
            "stage",
            "--json",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    counters = result["counters"]
    assert set(counters) == {"analytic", "torch"}
    assert counters["torch"]["flops"] == 2 * counters["torch"]["macs"]
    assert counters["analytic"]["macs"] == result["macs"]
    assert set(counters["torch"]["layers"]) == {row["name"] for row in result["layers"]}
    assert all(row["differs"] == [] for row in result["layers"])


@pytest.mark.parametrize("fmt, first", [("csv", "name,type,input"), ("markdown", "| name | type")])
def test_profile_exports_csv_and_markdown(capsys, fmt, first):
    code = main(["profile", "resnet26", "--counters", "torch", "--group", "stage", "--format", fmt])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith(first) and "torch MACs" in lines[0]
    assert len(lines) == 6 + (2 if fmt == "markdown" else 1)


# -- third-party layers and models: one convention, every counter ---------------------------
def test_op_formulas_agree_with_what_torch_dispatches():
    """matmul (broadcast either way, 1-D), einsum (ellipsis, a letter summed away first,
    three operands) and fused attention, each against FlopCounterMode on the same call."""
    from torch.utils.flop_counter import FlopCounterMode

    from sasa_bench.counters import einsum_macs, matmul_macs, sdpa_macs

    def torch_macs(fn, *tensors) -> int:
        with FlopCounterMode(display=False) as mode:
            fn(*tensors)
        return mode.get_total_flops() // 2

    a, b = torch.randn(3, 1, 4, 5), torch.randn(2, 5, 6)
    assert matmul_macs(a.shape, b.shape) == torch_macs(torch.matmul, a, b) == 3 * 2 * 4 * 5 * 6
    assert matmul_macs((5,), (5, 6)) == torch_macs(torch.matmul, torch.randn(5), b[0]) == 30
    for equation, shapes in [
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("...ij,...jk->...ik", [(7, 2, 3, 4), (2, 4, 5)]),
        ("bhwc,hkc->bhwk", [(2, 3, 4, 5), (3, 6, 5)]),
        ("bxc,byc->bxy", [(2, 3, 8), (2, 4, 8)]),
        ("bij,bkl->bik", [(2, 3, 4), (2, 5, 6)]),  # j, l summed away; then a mul, no MAC
        ("bij,bjl->bil", [(2, 3, 4), (2, 4, 6)]),
        ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 6)]),
    ]:
        tensors = [torch.randn(shape) for shape in shapes]
        expected = torch_macs(lambda *t, e=equation: torch.einsum(e, *t), *tensors)
        assert einsum_macs(equation, shapes) == expected, equation
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    assert sdpa_macs(q.shape, k.shape, v.shape) == 2 * 3 * 5 * 7 * (8 + 4)


class Functional(nn.Module):
    """What timm's attention layers do outside their linear and conv modules."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.qkv = nn.Linear(channels, 3 * channels)  # with a bias: not a MAC
        self.norm = nn.LayerNorm(channels)
        self.act = nn.GELU()
        self.conv = SameConv(channels, channels, 3, bias=True)
        self.weight = nn.Parameter(torch.randn(channels, channels))

    def forward(self, x):  # x: (1, tokens, channels)
        q, k, v = self.qkv(self.norm(x)).unflatten(-1, (3, 2, -1)).permute(2, 0, 3, 1, 4)
        fused = nn.functional.scaled_dot_product_attention(q, k, v)
        logits = q @ k.transpose(-2, -1)
        plain = torch.einsum("bhxy,bhyd->bhxd", logits.softmax(-1), v)
        mixed = (fused + plain).transpose(1, 2).flatten(2) @ self.weight
        side = int(x.shape[1] ** 0.5)
        image = self.act(mixed).transpose(1, 2).unflatten(-1, (side, side))
        return self.conv(image)


class SameConv(nn.Conv2d):
    """A conv subclass that calls F.conv2d itself (as timm's Conv2dSame does)."""

    def forward(self, x):
        return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1)), self.weight, self.bias)


@pytest.mark.parametrize("counter", COUNTERS)
def test_functional_attention_ops_count_once_in_every_counter(counter):
    tokens, channels, heads = 16, 16, 2
    head = channels // heads
    expected = {
        "qkv": tokens * channels * 3 * channels,
        "conv": tokens * channels * channels * 9,
        # own ops: fused q.k + attn.v, the same by hand (q @ k, einsum), mixed @ weight
        "": 2 * heads * tokens * tokens * 2 * head + tokens * channels * channels,
    }
    model = Wrap(Functional(channels))
    result = run_counter(counter, model, torch.randn(1, tokens, channels))
    assert result.note is None, result.note
    assert result.macs == sum(expected.values())
    assert result.layers["layer.qkv"] == expected["qkv"]
    assert result.layers["layer.conv"] == expected["conv"]
    assert result.layers.get("layer.norm", 0) == result.layers.get("layer.act", 0) == 0


#: timm models, each family's attention once: bottleneck attention (BoTNet) and lambda layers
#: by name at a size they build for; windowed attention (Swin) and depthwise convs with
#: LayerNorm (ConvNeXt) in smaller widths and depths of the same classes, to stay fast. ViT's
#: fused attention and HaloNet's layer (its net needs 256x256) are counted below.
TIMM_MODELS = [
    ("timm:botnet26t_256:resolution=64", {}),
    ("timm:lambda_resnet26t:resolution=64", {}),
    ("timm:convnext_tiny:resolution=32", {"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)}),
    (
        "timm:swin_tiny_patch4_window7_224:resolution=64",
        {"embed_dim": 16, "depths": (1, 1, 2, 1), "num_heads": (1, 1, 2, 2), "window_size": 4},
    ),
]


def timm_or_skip():
    """timm, imported as sasa_bench imports it (torchvision first); skipped where absent."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (pip install -e '.[dev]')")
    return import_source("timm")


def agree_on_every_module(model: nn.Module, x: torch.Tensor) -> int:
    """Run every counter; each agrees with torch's exactly, in total and on every module's own
    MACs; return the total."""
    from sasa_bench.counters import own_macs

    results = {name: run_counter(name, model, x) for name in COUNTERS}
    for name, result in results.items():
        assert result.note is None, (name, result.note)
    reference = own_macs(model, results["torch"])
    assert sum(reference.values()) == results["torch"].macs > 0
    for name, result in results.items():
        assert result.macs == results["torch"].macs, name
        assert own_macs(model, result) == reference, name
    return results["torch"].macs


@pytest.mark.parametrize("name, smaller", TIMM_MODELS)
def test_timm_models_agree_in_every_counter_per_module(name, smaller):
    timm = timm_or_skip()
    spec = parse_model(name).spec
    if smaller:
        size = {"img_size": spec.resolution} if "swin" in name else {}
        model = timm.create_model(spec.arch, pretrained=False, **size, **smaller)
    else:
        model = build_model(spec)
    agree_on_every_module(model.eval(), torch.randn(1, 3, spec.resolution, spec.resolution))


def test_fused_and_explicit_attention_count_the_same():
    timm = timm_or_skip()
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10
    ).eval()
    x = torch.randn(1, 3, 32, 32)
    counts = {}
    for fused in (True, False):
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused
        counts[fused] = agree_on_every_module(model, x)
    assert counts[True] == counts[False]


@pytest.mark.parametrize(
    "layer, options",
    [
        ("halo_attn.HaloAttn", {"block_size": 4, "halo_size": 1}),
        ("bottleneck_attn.BottleneckAttn", {"feat_size": 8}),
        ("lambda_layer.LambdaLayer", {"dim_head": 8, "r": 3}),
    ],
)
def test_timm_attention_layers_agree_in_every_counter(layer, options):
    timm_or_skip()
    module_name, _, name = layer.partition(".")
    layer_type = getattr(importlib.import_module(f"timm.layers.{module_name}"), name)
    module = layer_type(32, 32, num_heads=4, **options)
    agree_on_every_module(Wrap(module).eval(), torch.randn(1, 32, 8, 8))


def test_a_timm_and_a_torchvision_resnet50_count_as_the_analytic_resnet50():
    """The same network three times (torchvision's layout): parameters and MACs agree."""
    timm_or_skip()
    analytic = model_cost(parse_model("resnet50:resolution=32").spec)
    for name in ("timm:resnet50:resolution=32", "torchvision:resnet50:resolution=32"):
        model = build_model(parse_model(name).spec).eval()
        assert sum(p.numel() for p in model.parameters()) == analytic.params == 25_557_032
        assert run_counter("torch", model, torch.randn(1, 3, 32, 32)).macs == analytic.macs

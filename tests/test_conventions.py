"""Training conventions outside Eq. 3: the residual-branch init, the q/k/v init, the border and
the query scaling, as model options that every record states."""

import pytest
import torch

from sasa_bench.errors import SpecError
from sasa_bench.layers.sasa import SASA2d
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import Bottleneck, build_model, model_cost


def he_std(fan_out: int) -> float:
    """kaiming_normal_(mode="fan_out", nonlinearity="relu") of a 1x1 convolution."""
    return (2 / fan_out) ** 0.5


@pytest.mark.parametrize(("logits", "count"), [("qk+qr", 3), ("qr", 2)])
def test_each_projection_is_initialised_as_its_own_1x1_convolution(logits, count):
    torch.manual_seed(0)
    layer = SASA2d(256, 256, logits=logits)
    parts = layer.qkv.weight.split(256)
    assert len(parts) == count
    for part in parts:  # 65,536 draws each: the sample std is within 1 % of the true one
        assert part.std().item() == pytest.approx(he_std(256), rel=0.02)


def test_fused_init_is_one_convolution_of_the_stacked_width():
    torch.manual_seed(0)
    layer = SASA2d(256, 256, qkv_init="fused")
    for part in layer.qkv.weight.split(256):
        assert part.std().item() == pytest.approx(he_std(3 * 256), rel=0.02)


def test_the_network_init_keeps_the_per_projection_std():
    """ResNet's init runs He-normal over every Conv2d (fan_out = 3 C for the stacked q/k/v);
    the SASA layers then reset their projections."""
    torch.manual_seed(0)
    model = build_model(parse_model("sasa26:width=1").spec)
    layer = model.stages[2][1].mixer  # 256 channels
    for part in layer.qkv.weight.split(layer.out_channels):
        assert part.std().item() == pytest.approx(he_std(layer.out_channels), rel=0.02)


@pytest.mark.parametrize("name", ["resnet26", "sasa26", "sasa26-full"])
def test_zero_init_last_starts_every_block_as_its_shortcut(name):
    on = build_model(parse_model(f"{name}:width=0.25").spec)
    off = build_model(parse_model(f"{name}:width=0.25,zero_init_last=false").spec)
    blocks = [m for m in on.modules() if isinstance(m, Bottleneck)]
    assert blocks and all(torch.equal(b.bn3.weight, torch.zeros_like(b.bn3.weight)) for b in blocks)
    other = [m for m in off.modules() if isinstance(m, Bottleneck)]
    assert all(torch.equal(b.bn3.weight, torch.ones_like(b.bn3.weight)) for b in other)
    # every other BatchNorm starts at gamma = 1 either way
    assert all(torch.equal(b.bn1.weight, torch.ones_like(b.bn1.weight)) for b in blocks)


def test_conventions_are_options_of_the_grammar_with_their_defaults():
    default = parse_model("sasa26")
    assert default.spec.conventions() == {
        "zero_init_last": True, "padding": "zero", "qscale": "none", "qkv_init": "separate",
    }  # fmt: skip
    assert parse_model("resnet26").spec.conventions() == {"zero_init_last": True}
    named = parse_model("sasa26:zero_init_last=0,padding=mask,qscale=rsqrt,qkv_init=fused")
    assert named.name == "sasa26:padding=mask,qkv_init=fused,qscale=rsqrt,zero_init_last=false"
    assert parse_model(named.name).spec == named.spec
    assert parse_model("sasa26:zero_init_last=yes").name == "sasa26"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sasa26:zero_init_last=maybe", "expected true or false"),
        ("sasa26:padding=reflect", "padding must be one of zero, mask"),
        ("sasa26:qscale=2", "qscale must be one of none, rsqrt"),
        ("sasa26:qkv_init=xavier", "qkv_init must be one of separate, fused"),
    ],
)
def test_bad_convention_values_are_clear_errors(text, message):
    with pytest.raises(SpecError, match=message):
        parse_model(text)


def test_conventions_do_not_change_the_cost():
    base = model_cost(parse_model("sasa26").spec).totals()
    other = parse_model("sasa26:zero_init_last=0,padding=mask,qscale=rsqrt,qkv_init=fused")
    assert model_cost(other.spec).totals() == base


def test_the_layer_passes_its_border_and_scale_to_the_attention_core():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 5, 5)
    plain = SASA2d(16, 16, kernel_size=3, heads=2)
    for option, value in (("padding", "mask"), ("qscale", "rsqrt")):
        other = SASA2d(16, 16, kernel_size=3, heads=2, **{option: value})
        other.load_state_dict(plain.state_dict())
        assert not torch.allclose(other(x), plain(x)), option
    assert SASA2d(16, 16, heads=2, qscale="rsqrt").scale == pytest.approx(8**-0.5)

"""Built models agree with the analytic cost, layer by layer, and run forward and backward."""

import pytest
import torch
from conftest import ALL_MODELS

from sasa_bench.errors import SpecError
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import build_model, model_cost


def _at(name: str, resolution: int) -> str:
    return f"{name}{',' if ':' in name else ':'}resolution={resolution}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_analytic_params_equal_built_params(name):
    spec = parse_model(name).spec  # at 224: absolute tables are sized for it
    model = build_model(spec)
    cost = model_cost(spec)
    assert cost.params == sum(p.numel() for p in model.parameters())
    modules = dict(model.named_modules())
    for layer in cost.layers:
        assert layer.name in modules, layer.name
        assert layer.params == sum(p.numel() for p in modules[layer.name].parameters()), layer.name


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_on_cpu_with_the_counted_shapes(name):
    spec = parse_model(_at(name, 64)).spec
    model = build_model(spec)
    cost = model_cost(spec)
    shapes = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, tuple(o.shape[1:])))
        for n, module in model.named_modules()
    ]
    x = torch.randn(2, 3, 64, 64)
    out = model(x)
    for hook in hooks:
        hook.remove()
    assert out.shape == (2, spec.num_classes)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    for layer in cost.layers:
        assert shapes[layer.name] == layer.out_shape, layer.name


def test_cost_totals_and_layers_as_records_store_them():
    cost = model_cost(parse_model("resnet26").spec)
    assert cost.totals() == {"params": cost.params, "macs": cost.macs, "flops": 2 * cost.macs}
    layers = cost.by_layer()
    assert list(layers) == [layer.name for layer in cost.layers]
    assert layers["stem.conv"] == [9408, 118013952, 236027904]
    assert sum(params for params, _, _ in layers.values()) == cost.params == 13_696_552


def test_cost_is_for_any_resolution():
    small = model_cost(parse_model("sasa50").spec)
    large = model_cost(parse_model("sasa50:resolution=448").spec)
    # Every layer's MACs scale with its pixel count: 4x fewer at half the side.
    assert large.macs - large.layers[-1].macs == 4 * (small.macs - small.layers[-1].macs)
    odd = model_cost(parse_model("resnet50:resolution=97").spec)
    assert odd.layers[-2].out_shape == (2048, 4, 4)


def test_resolution_too_small_is_an_error():
    with pytest.raises(SpecError, match="too small"):
        model_cost(parse_model("resnet50:resolution=8").spec)


def test_absolute_model_refuses_another_resolution():
    model = build_model(parse_model("sasa26:pos=absolute,resolution=64").spec)
    with pytest.raises(ValueError, match="build the model for this resolution"):
        model(torch.randn(1, 3, 96, 96))


def test_mixed_stages_put_attention_only_where_asked():
    from sasa_bench.layers.sasa import SASA2d

    model = build_model(parse_model("sasa50:stages=acca").spec)
    kinds = {
        name.split(".")[1]: type(m).__name__
        for name, m in model.named_modules()
        if name.endswith(".mixer")
    }
    assert kinds == {"0": "SASA2d", "1": "Conv2d", "2": "Conv2d", "3": "SASA2d"}
    assert isinstance(model.stages[0][0].mixer, SASA2d)

"""Per-layer measured time and memory, keyed like the analytic per-layer cost."""

import pytest
import torch
from torch import nn

from sasa_bench.measure.layers import layer_latency_rows, measure_layer_latency
from sasa_bench.measure.memory import LiveTensorBytes
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import build_model, model_cost


@pytest.fixture(scope="module")
def sasa26():
    spec = parse_model("sasa26:resolution=32").spec
    model = build_model(spec).eval()
    return spec, model, measure_layer_latency(model, torch.randn(2, 3, 32, 32), "cpu", iters=1)


def test_every_costed_layer_is_measured(sasa26):
    spec, _, layers = sasa26
    assert list(layers) == [layer.name for layer in model_cost(spec).layers]
    for row in layers.values():
        assert row["time_ms"] >= 0 and row["calls"] == 1 and row["peak_memory_bytes"] >= 0


def test_peak_memory_of_a_layer_is_its_output_on_cpu(sasa26):
    _, model, layers = sasa26
    # stem conv: 2 images x 64 channels x 16 x 16 fp32 outputs; nothing else survives it
    assert layers["stem.conv"]["peak_memory_bytes"] == 2 * 64 * 16 * 16 * 4
    # attention needs temporaries beyond its output: the peak is above the output alone
    mixer = layers["stages.0.0.mixer"]["peak_memory_bytes"]
    assert mixer > 2 * 64 * 8 * 8 * 4


def test_live_tensor_bytes_counts_creations_views_and_frees():
    with LiveTensorBytes() as tracker:
        a = torch.ones(256)  # 1 KiB
        view = a[:10]  # shares a's storage: not counted again
        b = torch.ones(512)  # 2 KiB
        assert tracker.current() == 3072
        del b
        tracker.reset_peak()
        c = a * 2  # 1 KiB
        assert tracker.current() == 2048 and tracker.peak() == 2048
    assert view.shape == (10,) and c.shape == (256,)


def test_nested_or_unknown_layer_names_are_refused():
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 4)), nn.ReLU())
    x = torch.randn(1, 4)
    with pytest.raises(ValueError, match="must not nest"):
        measure_layer_latency(model, x, names=["0", "0.0"])
    with pytest.raises(ValueError, match="no module named"):
        measure_layer_latency(model, x, names=["7"])
    layers = measure_layer_latency(model, x, warmup=0, iters=2)  # leaves by default
    assert list(layers) == ["0.0", "1"]


def test_layer_rows_add_flops_and_achieved_flops_per_second():
    rows = layer_latency_rows("resnet26:resolution=32", batch_size=1, warmup=0, iters=1)
    by_name = {row["name"]: row for row in rows}
    cost = {
        layer.name: layer for layer in model_cost(parse_model("resnet26:resolution=32").spec).layers
    }
    assert list(by_name) == list(cost)
    conv = by_name["stem.conv"]
    assert conv["flops"] == cost["stem.conv"].flops and conv["type"] == "conv"
    if conv["time_ms"] > 0:
        assert conv["flops_per_s"] == pytest.approx(conv["flops"] / (conv["time_ms"] / 1e3))
    assert by_name["stem.bn"]["flops_per_s"] is None  # nothing counted, no rate
    assert sum(row["time_share"] for row in rows) == pytest.approx(1.0)

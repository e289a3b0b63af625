import pytest
import torch

from sasa_bench.models.registry import PRESETS

ABLATIONS = [
    "sasa50:stem=attention-plain",
    "sasa50:stem=attention-convvalues",
    "sasa50:pos=none",
    "sasa50:pos=absolute",
    "sasa50:logits=qr",
    "sasa50:k=3",
    "sasa50:k=11",
    "sasa50:heads=4",
    "sasa50:width=0.5",
    "resnet50:width=1.5",
    "sasa26:stages=caca",
    "sasa38:stages=ccca,stem=attention",
    "resnet26:num_classes=10",
]
ALL_MODELS = list(PRESETS) + ABLATIONS


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

"""The device vocabulary: every command names and checks its device the same way."""

import pytest
import torch

from sasa_bench.devices import DTYPES, check_device, check_dtype, resolve_device
from sasa_bench.errors import SasaBenchError
from sasa_bench.train.distributed import init_world


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_names_and_their_devices(monkeypatch):
    assert check_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fake_gpus(monkeypatch, 2)
    assert check_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto", kinds=("cpu",)) == torch.device("cpu")
    assert check_dtype("bf16") is DTYPES["bf16"] is torch.bfloat16


@pytest.mark.parametrize(
    "device, kinds, gpus, message",
    [
        ("gpu", ("cpu", "cuda", "mps"), 0, "unknown device 'gpu' (cpu, cuda, cuda:N, mps)"),
        ("cuda", ("cpu", "cuda", "mps"), 0, "no GPU"),
        ("cuda:2", ("cpu", "cuda", "mps"), 2, "no cuda:2: this machine has 2 CUDA device(s)"),
        ("mps", ("cpu", "cuda"), 0, "unsupported device 'mps' (cpu, cuda, cuda:N)"),
        ("meta", ("cpu", "cuda", "mps"), 0, "unsupported device 'meta'"),
    ],
)
def test_an_unusable_device_is_one_line(monkeypatch, device, kinds, gpus, message):
    fake_gpus(monkeypatch, gpus)
    with pytest.raises(SasaBenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_device(device, kinds)


def test_training_takes_the_same_names(monkeypatch):
    """`cuda:N` is a device for training too (one vocabulary for bench, train, report, check)."""
    assert init_world("cpu").device == torch.device("cpu")
    fake_gpus(monkeypatch, 0)
    with pytest.raises(SasaBenchError, match="no GPU"):
        init_world("cuda:1")
    fake_gpus(monkeypatch, 2)
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert init_world("cuda:1").device == torch.device("cuda", 1) and chosen == [1]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SasaBenchError, match="local rank"):
        init_world("cuda:1")

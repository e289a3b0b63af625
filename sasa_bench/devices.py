"""The device and dtype vocabulary that bench, train, report and check all use.

A device is `cpu`, `cuda`, `cuda:N` or `mps` (torch's names); `auto` picks the first GPU where
there is one, else the CPU. Every command checks its device here, before any work starts, so a
missing GPU is one line, not a failed measurement.
"""

from __future__ import annotations

import torch

from sasa_bench.errors import SasaBenchError

#: dtype names of the command line
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: what a measurement times: a forward pass, or a whole training step
MODES = ("infer", "train")
KINDS = ("cpu", "cuda", "mps")


def check_device(device: str, kinds: tuple[str, ...] = KINDS, *, here: bool = True) -> torch.device:
    """The torch.device `device` names; SasaBenchError unless its kind is one of `kinds` and
    (`here`) it is usable on this machine."""
    names = ", ".join(f"{kind}, cuda:N" if kind == "cuda" else kind for kind in kinds)
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise SasaBenchError(f"unknown device {device!r} ({names})") from None
    if parsed.type not in kinds:
        raise SasaBenchError(f"unsupported device {device!r} ({names})")
    if not here:
        return parsed
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise SasaBenchError(f"no GPU: torch {torch.__version__} sees no CUDA device")
        if (parsed.index or 0) >= count:
            raise SasaBenchError(f"no {device}: this machine has {count} CUDA device(s)")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise SasaBenchError("no MPS device here")
    return parsed


def resolve_device(device: str, kinds: tuple[str, ...] = KINDS) -> torch.device:
    """`check_device`, with `auto` meaning cuda where a GPU is present, else cpu."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and "cuda" in kinds else "cpu"
    return check_device(device, kinds)


def check_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise SasaBenchError(f"unknown dtype {name!r}; known: {', '.join(DTYPES)}") from None

"""Attention backends: interchangeable implementations of the SASA attention core.

Every backend has the signature of `reference.attention`. `exact` backends compute Eq. 3 with
the paper's zero-padded border and must agree with the reference to rounding error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from sasa_bench.errors import UnknownNameError
from sasa_bench.kernels import reference

AttentionFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Backend:
    name: str
    fn: AttentionFn
    exact: bool
    description: str


BACKENDS: dict[str, Backend] = {
    "reference": Backend(
        "reference",
        reference.attention,
        exact=True,
        description="paper-faithful PyTorch loop over the k x k offsets (bounded memory)",
    ),
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown attention implementation {name!r}; known: {', '.join(BACKENDS)}"
        ) from None

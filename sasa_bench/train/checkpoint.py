"""Checkpoints: written atomically, read without running code, with the RNG states.

A checkpoint is a dict of tensors and plain values (`torch.load(weights_only=True)` reads it,
so opening one cannot execute code). `save_checkpoint` writes a temporary file in the same
folder, fsyncs it and renames it over the old one: a crash at any point leaves either the old
checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sasa_bench.errors import SasaBenchError

FORMAT = "sasa_bench-checkpoint"
VERSION = 1


class CheckpointError(SasaBenchError):
    """A checkpoint that is missing, unreadable, or not one of ours."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with temporary.open("wb") as handle:
            torch.save({"format": FORMAT, "version": VERSION, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(path.parent)


#: the checkpoint file inside a run folder
FILENAME = "checkpoint.pt"


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The checkpoint `path` names: the file itself, or a run folder's checkpoint.pt."""
    path = Path(path)
    if path.is_dir():
        if not (path / FILENAME).is_file():
            raise CheckpointError(f"no checkpoint: the folder {str(path)!r} holds no {FILENAME}")
        return path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint {str(path)!r}")
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state saved at `path` (a checkpoint file or a run folder)."""
    path = checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a torn or foreign file
        # torch's message is a page on weights_only; the type is enough to tell them apart
        raise CheckpointError(
            f"{path} is not a sasa_bench checkpoint (torch cannot read it: "
            f"{type(error).__name__}); give the checkpoint.pt of a run, or its folder"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sasa_bench checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}, this sasa_bench reads "
            f"{VERSION}"
        )
    return state


def load_weights(module: torch.nn.Module, weights: dict[str, Any], path: Path | str) -> None:
    """`module.load_state_dict(weights)`, with a one-line error where the names or shapes are
    another model's, or another sasa_bench version's (CHANGELOG.md lists the renames)."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as error:
        expected = module.state_dict().keys()
        missing, unexpected = expected - weights.keys(), weights.keys() - expected
        detail = (
            f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
            if missing or unexpected
            else str(error).strip().splitlines()[-1].strip()
        )
        raise CheckpointError(f"{path} holds weights this model cannot take: {detail}") from None


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA generator states, as plain values and tensors."""
    kind, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    return {
        "python": _to_lists(random.getstate()),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value: Any) -> Any:
    """Tuples -> lists, recursively (weights_only loading keeps lists, ints, floats, None)."""
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

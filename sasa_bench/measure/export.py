"""Models exported to ONNX once per model, input shape, dtype and translation, cached on disk.

`export_onnx` runs `torch.export` and the ONNX exporter (`torch.onnx.export`, dynamo) with the
attention op's translation (`sasa_bench.kernels.onnx`), and keeps the file under
`cache_root()`: `$SASA_BENCH_CACHE/onnx`, else `$XDG_CACHE_HOME/sasa_bench/onnx` (by default
`~/.cache/sasa_bench/onnx`). A second measurement of the same model (another fresh process,
another runtime, a rerun) reads the file instead of exporting again (an export takes seconds
to minutes, a read milliseconds).

The batch dimension is dynamic, and the sample that is traced has batch 2: a batch-1 sample
specialises the batch to 1 silently, and the file then refuses every other batch. The key of
a file is the model's canonical name (the resolution is part of it), the image size, the
dtype, the translation, the versions of sasa_bench (with its git commit), torch and
onnxscript, and a digest of the weights, so a changed model or a changed exporter never reads
an old file; a stale file all the same (local edits under one commit) is caught by the output
check (against the float64 network) that precedes every timing.

The ONNX optimizer of the exporter is not run (`optimize=False`): it takes 5-10x the export's
time, and ONNX Runtime and OpenVINO fold constants and fuse nodes themselves at load time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sasa_bench import __version__
from sasa_bench.kernels.onnx import decompositions, translation_table
from sasa_bench.records import environment

CACHE_ENV = "SASA_BENCH_CACHE"
#: ONNX opset of the exported files (the exporter's own library is written for it)
OPSET = 18
#: the traced sample's batch: 1 would specialise the batch dimension (see the module doc)
SAMPLE_BATCH = 2
MODEL_FILE, INFO_FILE = "model.onnx", "export.json"


class ExportFailed(RuntimeError):
    """The exporter refused the model: the measurement is a failed row that says why."""


@dataclass(frozen=True)
class Exported:
    path: str  # the .onnx file
    export_s: float  # time of the export that wrote it (torch.export + ONNX + save)
    cached: bool  # read from the cache, not exported by this call
    nodes: int  # nodes of the ONNX graph
    translation: str | None  # of the attention op (None: the model has none)
    opset: int
    key: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def cache_root() -> Path:
    base = os.environ.get(CACHE_ENV)
    if not base:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sasa_bench"
    return Path(base) / "onnx"


def weights_digest(model: nn.Module) -> str:
    """sha256 over the names and bytes of every parameter and buffer."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def cache_key(model: nn.Module, name: str, shape: tuple[int, ...], dtype: str, translation):
    """A readable folder name: the model, shape, dtype and translation, then a digest of
    everything that changes the file."""
    import onnxscript

    identity = {
        "model": name,
        "shape": list(shape[1:]),
        "dtype": dtype,
        "translation": translation,
        "opset": OPSET,
        "sasa_bench": __version__,
        "git_sha": environment()["git_sha"],
        "torch": torch.__version__,
        "onnxscript": onnxscript.__version__,
        "weights": weights_digest(model),
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    readable = "".join(c if c.isalnum() or c in "=.-" else "_" for c in name)
    size = "x".join(map(str, shape[1:]))
    return f"{readable}-{size}-{dtype}-{translation or 'none'}-{digest}"


def export_onnx(
    model: nn.Module, inputs: torch.Tensor, *, name: str, dtype: str, translation: str | None
) -> Exported:
    """The ONNX file of `model` for inputs shaped like `inputs` (any batch): from the cache,
    else exported now and cached. Raises ExportFailed with the exporter's reason."""
    key = cache_key(model, name, tuple(inputs.shape), dtype, translation)
    folder = cache_root() / key
    info = folder / INFO_FILE
    if info.is_file() and (folder / MODEL_FILE).is_file():  # the folder's file, wherever it is
        stored = json.loads(info.read_text())
        return Exported(**{**stored, "path": str(folder / MODEL_FILE), "cached": True})
    sample = torch.randn(
        (SAMPLE_BATCH, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device
    )
    start = time.perf_counter()
    with _quiet():
        try:
            program = _export(model.eval(), sample, translation)
        except Exception as error:  # the exporter's reason, on one line, for the record
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ExportFailed(
                f"torch.onnx.export of {name} (translation {translation}) failed: "
                f"{type(error).__name__}: {first}"
            ) from None
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder.parent))
        program.save(str(partial / MODEL_FILE))
    exported = Exported(
        str(folder / MODEL_FILE),
        time.perf_counter() - start,
        False,
        len(program.model.graph),
        translation,
        OPSET,
        key,
    )
    (partial / INFO_FILE).write_text(json.dumps({**exported.to_dict(), "cached": False}))
    try:
        partial.rename(folder)  # atomic: a reader sees the whole folder or none
    except OSError:  # another process cached the same export first: keep that one
        shutil.rmtree(partial, ignore_errors=True)
    return exported


def _export(model: nn.Module, sample: torch.Tensor, translation: str | None):
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (sample,), dynamic_shapes=({0: batch},))
    table = {}
    if translation is not None:
        replaced = decompositions(translation)
        if replaced:
            program = program.run_decompositions(replaced)
        table = translation_table(translation)
    return torch.onnx.export(
        program,
        (sample,),
        dynamo=True,
        opset_version=OPSET,
        custom_translation_table=table or None,
        optimize=False,
        verbose=False,
        input_names=["images"],
        output_names=["logits"],
    )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines and warnings (skipped torchvision ops, deprecations)
    kept off the terminal."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)

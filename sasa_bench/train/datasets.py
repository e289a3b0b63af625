"""Data sets named by a spec: `digits` and `mnist5k` (embedded), `cifar10:PATH`, `imagefolder:PATH`.

`open_dataset(spec)` reads and checks the data (missing path, wrong layout, corrupt file, a
single class: one clear `DataError`) and returns a `Dataset`: its classes, natural input size,
normalisation and two splits. Small data sets are held in memory as tensors (`ImageSet`); an
image folder stays on disk (`FolderSplit`) and is decoded by torchvision, imported only there.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from sasa_bench.errors import SasaBenchError, UnknownNameError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = (*CIFAR_TRAIN, "test_batch", "batches.meta")


class DataError(SasaBenchError):
    """Data that cannot be used as asked: a missing path, a wrong layout, a corrupt file."""


@dataclass(frozen=True)
class ImageSet:
    """One split in memory: images N x C x H x W (uint8 0..255, or float 0..1) and labels."""

    images: torch.Tensor
    labels: torch.Tensor  # int64

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class FolderSplit:
    """One split on disk in ImageNet layout: root/CLASS/IMAGE."""

    root: Path


@dataclass(frozen=True)
class Dataset:
    spec: str
    classes: tuple[str, ...]
    resolution: int  # the input size a model is trained at unless told otherwise
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: ImageSet | FolderSplit
    test: ImageSet | FolderSplit
    flip: bool  # horizontal flips keep the label (not so for digits)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def open_dataset(spec: str) -> Dataset:
    name, _, path = spec.partition(":")
    if name not in READERS:
        raise UnknownNameError(
            f"unknown data {spec!r}; known: digits, mnist5k, cifar10:PATH, imagefolder:PATH"
        )
    needs_path = name not in EMBEDDED
    if needs_path != bool(path):
        usage = f"{name}:PATH" if needs_path else name
        raise DataError(f"data {spec!r}: write it as {usage}")
    return READERS[name](spec, Path(path).expanduser() if path else None)


def read_digits(spec: str, _: None) -> Dataset:
    """UCI handwritten digits (sasa_bench/data/digits.npz, see tools/convert_digits.py):
    8x8 grey images 0..16, shown to the model upsampled to 32x32 and as 3 equal channels."""
    return _embedded_grey(spec, "digits.npz", top=16, resolution=32)


def read_mnist5k(spec: str, _: None) -> Dataset:
    """5,000 MNIST digits (sasa_bench/data/mnist5k.npz, see tools/convert_mnist5k.py): 28x28
    grey images 0..255, 400 train and 100 test per class, shown as 3 equal channels at 28x28
    (a model's `resolution` option upsamples them, e.g. sasa26:resolution=56)."""
    return _embedded_grey(spec, "mnist5k.npz", top=255, resolution=28)


def _embedded_grey(spec: str, name: str, *, top: int, resolution: int) -> Dataset:
    """A digit set embedded in sasa_bench/data: x_train, y_train, x_test, y_test, images
    N x H x W of integers 0..top, labels 0-9; normalised by the train split's grey mean/std."""
    with resources.files("sasa_bench.data").joinpath(name).open("rb") as handle:
        arrays = dict(np.load(handle))
    splits = {
        split: _checked_set(
            spec, split, _grey_to_rgb(arrays[f"x_{split}"], top), arrays[f"y_{split}"], 10
        )
        for split in ("train", "test")
    }
    grey = splits["train"].images[:, 0]
    return Dataset(
        spec,
        classes=tuple(str(d) for d in range(10)),
        resolution=resolution,
        mean=(grey.mean().item(),) * 3,
        std=(grey.std().item(),) * 3,
        train=splits["train"],
        test=splits["test"],
        flip=False,
    )


def _grey_to_rgb(images: np.ndarray, top: int) -> torch.Tensor:
    """N x H x W integers 0..top -> N x 3 x H x W floats 0..1 (a view of one channel)."""
    return torch.from_numpy(images).float().div_(top).unsqueeze(1).expand(-1, 3, -1, -1)


def read_cifar10(spec: str, path: Path) -> Dataset:
    """The python batches of CIFAR-10 (data_batch_1..5, test_batch, batches.meta), from their
    folder, the folder holding it, or the downloaded cifar-10-python.tar.gz."""
    files = _cifar_files(spec, path)
    train = [_cifar_batch(spec, name, files[name]) for name in CIFAR_TRAIN]
    test = _cifar_batch(spec, "test_batch", files["test_batch"])
    classes = tuple(str(i) for i in range(10))
    if "batches.meta" in files:
        meta = _unpickle(spec, "batches.meta", files["batches.meta"])
        names = meta.get("label_names")
        if isinstance(names, list) and len(names) == 10:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    images = np.concatenate([x for x, _ in train])
    labels = np.concatenate([y for _, y in train])
    return Dataset(
        spec,
        classes=classes,
        resolution=32,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        train=_checked_set(spec, "train", torch.from_numpy(images), labels, 10),
        test=_checked_set(spec, "test", torch.from_numpy(test[0]), test[1], 10),
        flip=True,
    )


def read_imagefolder(spec: str, path: Path) -> Dataset:
    """ImageNet layout: PATH/train/CLASS/*.JPEG and PATH/val/CLASS/*.JPEG, the same classes."""
    _need_dir(spec, path)
    splits = {}
    for split in ("train", "val"):
        root = path / split
        if not root.is_dir():
            raise DataError(
                f"{spec}: no {split}/ folder in {path} (expected {path}/{split}/CLASS/IMAGE)"
            )
        classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
        _check_class_count(spec, split, len(classes))
        empty = [c for c in classes if not any(_is_image(f) for f in (root / c).iterdir())]
        if empty:
            raise DataError(
                f"{spec}: no images in {split}/{empty[0]} ({len(empty)} empty class folder(s))"
            )
        splits[split] = classes
    if splits["train"] != splits["val"]:
        only = sorted(set(splits["train"]) ^ set(splits["val"]))
        raise DataError(f"{spec}: train/ and val/ have different classes (e.g. {only[:3]})")
    return Dataset(
        spec,
        classes=tuple(splits["train"]),
        resolution=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        train=FolderSplit(path / "train"),
        test=FolderSplit(path / "val"),
        flip=True,
    )


READERS = {
    "digits": read_digits,
    "mnist5k": read_mnist5k,
    "cifar10": read_cifar10,
    "imagefolder": read_imagefolder,
}
EMBEDDED = ("digits", "mnist5k")  # in the package: the spec takes no PATH


# -- checks and file helpers ------------------------------------------------------------------
def _checked_set(
    spec: str, split: str, images: torch.Tensor, labels: np.ndarray, num_classes: int
) -> ImageSet:
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if len(labels) != len(images):
        raise DataError(f"{spec}: {split} has {len(images)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{spec}: {split} labels outside 0..{num_classes - 1}")
    _check_class_count(spec, split, len(torch.unique(labels)))
    return ImageSet(images, labels)


def _check_class_count(spec: str, split: str, count: int) -> None:
    if split == "train" and count < 2:
        raise DataError(f"{spec}: the {split} split has {count} class(es); a classifier needs >= 2")
    if count < 1:
        raise DataError(f"{spec}: the {split} split is empty")


def _need_dir(spec: str, path: Path) -> None:
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder {str(path)!r}")
    if not path.is_dir():
        raise DataError(f"{spec}: {str(path)!r} is not a folder")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _cifar_files(spec: str, path: Path) -> dict[str, bytes]:
    """The bytes of every CIFAR-10 batch file, by name."""
    if path.is_file():
        try:
            with tarfile.open(path) as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                files = {n: tar.extractfile(members[n]).read() for n in CIFAR_FILES if n in members}
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataError(
                f"{spec}: {str(path)!r} is neither a folder nor a readable tar archive ({error})"
            ) from None
    else:
        _need_dir(spec, path)
        folder = path / CIFAR_DIR if (path / CIFAR_DIR).is_dir() else path
        files = {n: (folder / n).read_bytes() for n in CIFAR_FILES if (folder / n).is_file()}
    missing = [name for name in (*CIFAR_TRAIN, "test_batch") if name not in files]
    if missing:
        raise DataError(
            f"{spec}: not the CIFAR-10 python batches (missing {', '.join(missing)} in {path})"
        )
    return files


def _cifar_batch(spec: str, name: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(spec, name, raw)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{spec}: {name} has no N x 3072 'data' array (corrupt or not CIFAR-10)")
    if labels is None or len(labels) != len(data):
        raise DataError(f"{spec}: {name} has {len(data)} images but no matching 'labels'")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


class _ArraysOnly(pickle.Unpickler):
    """CIFAR batches hold only dicts, lists, bytes and numpy arrays: refuse anything else, so a
    hostile file cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(spec: str, name: str, raw: bytes) -> dict[str, object]:
    try:
        loaded = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except Exception as error:  # any unpickling failure means the same to the user
        raise DataError(f"{spec}: {name} is corrupt or not a CIFAR-10 batch ({error})") from None
    if not isinstance(loaded, dict):
        raise DataError(f"{spec}: {name} is not a CIFAR-10 batch (no dict inside)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in loaded.items()}

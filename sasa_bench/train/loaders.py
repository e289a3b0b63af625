"""Batches for training and evaluation, the same for one process or many.

Each epoch's order is a permutation drawn from (seed, epoch) alone, so an epoch is reproduced
exactly on resume. Process r of a world of W takes positions r, r + W, ...: the W shards of a
global batch are the batch one process would have taken, so a distributed run sees the same
global batches as a single process (BatchNorm statistics, per process, are the difference).
Training drops the last incomplete batch; evaluation shards every image exactly once.

In-memory sets (`TensorLoader`) are augmented on whole batches in the main process, with the
augmentation of every image also drawn from (seed, epoch): a random translation of up to 1/8 of
the side (zero padding) and, where labels allow, a horizontal flip. Image folders
(`FolderLoader`) use torchvision's ImageFolder with the ImageNet crops.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from sasa_bench.errors import SasaBenchError
from sasa_bench.models.thirdparty import import_torchvision
from sasa_bench.train.datasets import DataError, Dataset, FolderSplit, ImageSet
from sasa_bench.train.distributed import World

Batch = tuple[torch.Tensor, torch.Tensor]
#: in-memory sets of up to this many values once prepared (1 GiB of float32) are prepared once
PREPARE_ELEMENTS = 2**28


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator that depends on (seed, epoch, stream) only."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class _Sharded:
    """Epoch order and this process's share of it."""

    def __init__(self, size: int, *, batch_size: int, world: World, seed: int, train: bool):
        self.size, self.batch_size, self.world = size, batch_size, world
        self.seed, self.train, self.epoch = seed, train, 0
        if train and len(self) == 0:
            raise SasaBenchError(
                f"batch size {batch_size * world.size} is larger than the {size} training images"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def positions(self) -> torch.Tensor:
        """Positions in the epoch's order that this process visits, in visiting order."""
        end = self.size // self.world.size * self.world.size if self.train else self.size
        return torch.arange(self.world.rank, end, self.world.size)

    def order(self) -> torch.Tensor:
        if not self.train:
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=epoch_generator(self.seed, self.epoch))

    def __len__(self) -> int:
        count = len(self.positions())
        if self.train:
            return count // self.batch_size
        return -(-count // self.batch_size)

    def batches(self) -> Iterator[torch.Tensor]:
        positions = self.positions()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield positions[start : start + self.batch_size]


class TensorLoader(_Sharded):
    """Batches of an in-memory set. Images are resized, zero-padded for the translation and
    normalised once, where the result fits in PREPARE_ELEMENTS values (digits, CIFAR-10 at
    32x32); larger ones per batch. A training batch is then one gather of shifted windows:
    on a busy 2-core CPU each extra small op costs milliseconds."""

    def __init__(
        self, images: ImageSet, dataset: Dataset, *, resolution: int, batch_size: int,
        world: World, seed: int, train: bool,
    ) -> None:  # fmt: skip
        super().__init__(len(images), batch_size=batch_size, world=world, seed=seed, train=train)
        self.resolution, self.pad = resolution, resolution // 8 if train else 0
        self.flip = dataset.flip and train
        self.mean = torch.tensor(dataset.mean).view(1, -1, 1, 1)
        self.std = torch.tensor(dataset.std).view(1, -1, 1, 1)
        self.labels = images.labels
        count, channels = images.images.shape[:2]
        self.prepared = count * channels * (resolution + 2 * self.pad) ** 2 <= PREPARE_ELEMENTS
        self.images = images.images
        if self.prepared:
            self.images = torch.cat([self._prepare(chunk) for chunk in self.images.split(4096)])

    def __iter__(self) -> Iterator[Batch]:
        order = self.order()
        shifts, flips = self._draw_augmentation()
        for positions in self.batches():
            index = order[positions]
            x = self.images[index] if self.prepared else self._prepare(self.images[index])
            yield crop(x, self.pad, shifts[positions], flips[positions]), self.labels[index]

    def _draw_augmentation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position of the epoch: a shift in [-pad, pad]^2 and a flip flag."""
        if not self.train:
            return torch.zeros(self.size, 2, dtype=torch.int64), torch.zeros(self.size, dtype=bool)
        generator = epoch_generator(self.seed, self.epoch, stream=1)
        shifts = torch.randint(-self.pad, self.pad + 1, (self.size, 2), generator=generator)
        flips = torch.rand(self.size, generator=generator) < 0.5
        return shifts, flips & self.flip

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 0..255 or float 0..1 -> resized, padded with black, normalised floats."""
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        if x.shape[-2:] != (self.resolution, self.resolution):
            shrink = x.shape[-1] > self.resolution
            size = (self.resolution, self.resolution)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        return (F.pad(x, (self.pad,) * 4) - self.mean) / self.std


def crop(x: torch.Tensor, pad: int, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """The window of every image of `x` (padded by `pad` on each side) shifted by its
    (dy, dx) in [-pad, pad], mirrored where `flips` says."""
    if pad:
        n, channels, height, width = x.shape
        rows = (pad - shifts[:, 0])[:, None] + torch.arange(height - 2 * pad)  # n x h
        cols = (pad - shifts[:, 1])[:, None] + torch.arange(width - 2 * pad)  # n x w
        batch = torch.arange(n)[:, None, None, None]
        channel = torch.arange(channels)[None, :, None, None]
        x = x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    if flips.any():
        x = torch.where(flips[:, None, None, None], x.flip(-1), x)
    return x


class FolderLoader(_Sharded):
    def __init__(
        self, split: FolderSplit, dataset: Dataset, *, resolution: int, batch_size: int,
        world: World, seed: int, train: bool, workers: int, subset: int | None,
    ) -> None:  # fmt: skip
        tv = torchvision_or_error(dataset.spec)
        images = tv.datasets.ImageFolder(
            str(split.root), transform=folder_transform(tv, dataset, resolution, train)
        )
        if tuple(images.classes) != dataset.classes:
            raise DataError(f"{dataset.spec}: the classes of {split.root} changed while reading")
        if subset is not None and subset < len(images):
            images = torch.utils.data.Subset(images, subset_indices(len(images), subset).tolist())
        super().__init__(len(images), batch_size=batch_size, world=world, seed=seed, train=train)
        self.images, self.workers = images, workers

    def __iter__(self) -> Iterator[Batch]:
        order = self.order()
        sampler = [int(order[p]) for positions in self.batches() for p in positions]
        loader = torch.utils.data.DataLoader(
            self.images,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.workers,
            pin_memory=self.world.device.type == "cuda",
            # worker seeds derive from this generator: augmentation repeats on resume
            generator=epoch_generator(self.seed, self.epoch, stream=1),
        )
        yield from loader


def torchvision_or_error(spec: str):
    """torchvision for decoding an image folder (models.thirdparty.import_torchvision: a
    CUDA build beside a CPU torch works too, without its compiled ops, which decoding does
    not use)."""
    try:
        return import_torchvision()
    except SasaBenchError as error:
        raise SasaBenchError(f"{spec} needs torchvision to decode images: {error}") from None


def folder_transform(tv, dataset: Dataset, resolution: int, train: bool):
    """Inception crop + flip for training; resize to 256/224 of the size + centre crop for
    evaluation (the standard ImageNet pipeline)."""
    T = tv.transforms
    normalize = [T.ToTensor(), T.Normalize(dataset.mean, dataset.std)]
    if train:
        return T.Compose([T.RandomResizedCrop(resolution), T.RandomHorizontalFlip(), *normalize])
    resize = round(resolution * 256 / 224)
    return T.Compose([T.Resize(resize), T.CenterCrop(resolution), *normalize])


def subset_indices(size: int, count: int) -> torch.Tensor:
    """A fixed random choice of `count` of `size` items (the same for every run and seed)."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(0))[:count].sort().values


def make_loader(
    dataset: Dataset, *, train: bool, resolution: int, batch_size: int, world: World,
    seed: int, workers: int = 4, subset: int | None = None,
) -> TensorLoader | FolderLoader:  # fmt: skip
    """The loader of the train or the test split; `batch_size` is global (split over the
    processes)."""
    if batch_size % world.size:
        raise SasaBenchError(
            f"batch size {batch_size} does not split evenly over {world.size} processes"
        )
    split = dataset.train if train else dataset.test
    common = dict(
        resolution=resolution, batch_size=batch_size // world.size, world=world, seed=seed
    )
    if isinstance(split, FolderSplit):
        return FolderLoader(split, dataset, **common, train=train, workers=workers, subset=subset)
    if subset is not None and subset < len(split):
        index = subset_indices(len(split), subset)
        split = ImageSet(split.images[index], split.labels[index])
    return TensorLoader(split, dataset, **common, train=train)


def make_loaders(dataset: Dataset, **options) -> tuple[TensorLoader | FolderLoader, ...]:
    """(train, test) loaders with the same options (see make_loader)."""
    return make_loader(dataset, train=True, **options), make_loader(dataset, train=False, **options)

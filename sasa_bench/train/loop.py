"""One epoch of training and one pass of evaluation, with their metrics summed over processes.

Sums (loss x images, correct top-1 / top-5, images) stay on the device and are read once per
epoch, so the loop does not synchronise with the GPU every step; the progress bar reads the
loss every `REFRESH_STEPS` steps only when it is shown.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from sasa_bench.errors import SasaBenchError
from sasa_bench.train.distributed import World, all_reduce_sum
from sasa_bench.train.progress import Progress

REFRESH_STEPS = 10
#: called after every optimizer step with (epoch, step); tests use it to inject failures
StepHook = Callable[[int, int], None]


@dataclass(frozen=True)
class Step:
    """How every batch is run: device placement, precision and memory layout."""

    world: World
    amp: str | None = None
    channels_last: bool = False

    def inputs(self, images: torch.Tensor, labels: torch.Tensor):
        device = self.world.device
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        return images, labels.to(device, non_blocking=True)

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.world.device.type, dtype=dtype)


def _sums(logits: torch.Tensor, labels: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """[loss x n, top-1 correct, top-5 correct, n] of one batch."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top.eq(labels[:, None])
    n = labels.shape[0]
    return torch.stack(
        [loss.detach().float() * n, hits[:, 0].sum().float(), hits.any(1).sum().float(),
         torch.tensor(float(n), device=logits.device)]
    )  # fmt: skip


def _metrics(sums: torch.Tensor, world: World, seconds: float, prefix: str) -> dict[str, float]:
    loss_sum, top1, top5, images = all_reduce_sum(sums, world).tolist()
    images = max(images, 1.0)
    return {
        f"{prefix}loss": loss_sum / images,
        f"{prefix}top1": 100.0 * top1 / images,
        f"{prefix}top5": 100.0 * top5 / images,
        f"{prefix}images": int(images),
        f"{prefix}seconds": seconds,
    }


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    *,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    criterion: nn.Module,
    step: Step,
    scaler: torch.amp.GradScaler,
    ema=None,
    progress: Progress,
    on_step: StepHook | None = None,
) -> dict[str, float]:
    """Train one epoch; returns train_loss, train_top1 (%), train_images, train_seconds."""
    model.train()
    sums = torch.zeros(4, device=step.world.device)
    start = time.perf_counter()
    with progress.task(f"epoch {epoch + 1} train", total=len(loader)) as advance:
        for index, (images, labels) in enumerate(loader):
            images, labels = step.inputs(images, labels)
            with step.autocast():
                logits = model(images)
                loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # fp16: skipped where gradients overflowed
            scaler.update()
            with warnings.catch_warnings():  # ... which torch reports as a misordered call
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step()`")
                scheduler.step()
            if ema is not None:
                ema.update(getattr(model, "module", model))
            sums += _sums(logits.detach(), labels, loss)
            shown = progress.enabled and (index % REFRESH_STEPS == 0 or index == len(loader) - 1)
            advance(loss=loss.item() if shown else None)
            if on_step is not None:
                on_step(epoch, index)
    if step.world.device.type == "cuda":
        torch.cuda.synchronize(step.world.device)
    result = _metrics(sums, step.world, time.perf_counter() - start, "train_")
    if not math.isfinite(result["train_loss"]):
        raise SasaBenchError(
            f"the training loss became {result['train_loss']} in epoch {epoch + 1}: "
            "lower --lr or use --amp bf16 instead of fp16"
        )
    return result


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable, *, step: Step, progress: Progress, label: str = "test"
) -> dict[str, float]:
    """Loss, top-1 and top-5 (%) over every image of the loader's split, all processes
    together; `seconds` is this process's wall time."""
    model.eval()
    criterion = nn.CrossEntropyLoss()
    sums = torch.zeros(4, device=step.world.device)
    start = time.perf_counter()
    with progress.task(label, total=len(loader)) as advance:
        for images, labels in loader:
            images, labels = step.inputs(images, labels)
            with step.autocast():
                logits = model(images)
            sums += _sums(logits, labels, criterion(logits.float(), labels))
            advance()
    if step.world.device.type == "cuda":
        torch.cuda.synchronize(step.world.device)
    return _metrics(sums, step.world, time.perf_counter() - start, "")

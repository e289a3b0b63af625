"""A training run: setup, resume, the epochs with their checkpoints and log, the final record.

Files of a run, in its output folder:

    checkpoint.pt   after every epoch (atomic): model, optimizer, scheduler, EMA, grad scaler,
                    RNG states, epoch, config and the per-epoch metrics so far
    epochs.jsonl    one Record(kind="epoch") per finished epoch, appended durably
    results.jsonl   the final Record(kind="train") (or --results FILE)

Order within an epoch: train, average BatchNorm statistics over processes, evaluate, write the
checkpoint, then the log line. A run killed at any point resumes from the last checkpoint and
repeats the lost epoch exactly (its data order and augmentation depend on seed and epoch only).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from sasa_bench.errors import SasaBenchError
from sasa_bench.measure.load import LoadProbe
from sasa_bench.measure.model import intra_op_threads
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.records import Record, append_record, environment, load_records
from sasa_bench.train import checkpoint as ckpt
from sasa_bench.train.config import TrainConfig
from sasa_bench.train.datasets import Dataset
from sasa_bench.train.distributed import (
    average_buffers,
    barrier,
    close_world,
    gather_objects,
    init_world,
    weights_digest,
)
from sasa_bench.train.loaders import make_loaders
from sasa_bench.train.loop import Step, StepHook, evaluate, train_epoch
from sasa_bench.train.optim import WeightEMA, build_optimizer, build_scheduler, set_bn_momentum
from sasa_bench.train.progress import Progress
from sasa_bench.train.setup import place_model, run_info

Echo = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class RunFolder:
    out: Path
    results: Path

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def log(self) -> Path:
        return self.out / "epochs.jsonl"


def train(
    config: TrainConfig,
    dataset: Dataset,
    *,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    results: str | Path | None = None,
    progress: Progress | None = None,
    echo: Echo = print,
    on_step: StepHook | None = None,
) -> Record:
    """Train `config.model` on `dataset`; returns the final record (the same on every rank)."""
    folder = RunFolder(Path(out), Path(results) if results else Path(out) / "results.jsonl")
    world = init_world(config.device)
    # One CPU thread unless asked: the weights do not depend on how busy the machine was when
    # the run started, and a busy machine cannot make its threads wait for each other.
    threads = config.threads or (1 if world.device.type == "cpu" else None)
    try:
        with intra_op_threads(threads):
            return _Run(config, dataset, folder, world, progress or Progress(), echo).go(
                resume=resume, overwrite=overwrite, on_step=on_step
            )
    finally:
        close_world(world)


class _Run:
    def __init__(self, config, dataset, folder, world, progress, echo) -> None:
        self.config, self.dataset, self.folder, self.world = config, dataset, folder, world
        self.progress = progress if world.is_main else Progress(enabled=False)
        self.echo = echo if world.is_main else (lambda _: None)
        self.named = parse_model(config.model)
        self.step = Step(world, config.amp, config.channels_last)
        self.history: list[dict[str, Any]] = []

    def go(self, *, resume: bool, overwrite: bool, on_step: StepHook | None) -> Record:
        config, world = self.config, self.world
        self._prepare_folder(resume, overwrite)
        torch.manual_seed(config.seed)
        self.model = place_model(self.named.spec, self.step, attn_impl=config.attn_impl)
        set_bn_momentum(self.model, config.bn_momentum)
        self.train_loader, self.test_loader = make_loaders(
            self.dataset, resolution=self.named.spec.resolution, batch_size=config.batch_size,
            world=world, seed=config.seed, workers=config.workers, subset=config.subset,
        )  # fmt: skip
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(self.optimizer, config, len(self.train_loader))
        self.scaler = torch.amp.GradScaler(world.device.type, enabled=config.amp == "fp16")
        self.ema = WeightEMA(self.model, config.ema) if config.ema else None
        start = self._resume() if resume else 0
        if start == config.epochs:
            done = self._finished_record()
            if done is not None:
                self.echo(f"{self.folder.out}: already trained for {start} epochs")
                return done
        wrapped: nn.Module = self.model
        if world.distributed:
            ids = [world.local_rank] if world.device.type == "cuda" else None
            wrapped = DistributedDataParallel(self.model, device_ids=ids)
        criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.echo(
            f"training {self.named.name} on {config.data} for {config.epochs} epochs "
            f"({len(self.train_loader)} steps of {config.batch_size} images each, "
            f"{world.size} process(es) on {world.device.type}) -> {self.folder.out}"
        )
        for epoch in range(start, config.epochs):
            try:
                self._epoch(epoch, wrapped, criterion, on_step)
            except SasaBenchError as error:
                if world.is_main:
                    append_record(self.folder.results, self._record("failed", str(error)))
                raise
        return self._final()

    # -- the folder, resume ------------------------------------------------------------------
    def _prepare_folder(self, resume: bool, overwrite: bool) -> None:
        check_folder(self.folder.checkpoint, resume=resume, overwrite=overwrite)
        if overwrite and not resume and self.world.is_main:
            for path in (self.folder.checkpoint, self.folder.log):
                path.unlink(missing_ok=True)
        barrier(self.world)

    def _resume(self) -> int:
        state = ckpt.load_checkpoint(self.folder.checkpoint)
        saved = TrainConfig(**state["config"])
        changed = self.config.mismatches(saved)
        if changed:
            raise SasaBenchError(
                f"--resume with other settings than the checkpoint's: {'; '.join(changed)}"
            )
        ckpt.load_weights(self.model, state["model"], self.folder.checkpoint)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        ckpt.set_rng_state(state["rng"])
        self.history = list(state["history"])
        if self.world.is_main:
            self._repair_log()
        self.echo(f"resumed {self.folder.checkpoint} after epoch {state['epoch']}")
        return state["epoch"]

    def _repair_log(self) -> None:
        """Append the epochs the checkpoint has but the log lacks (killed between the two)."""
        logged = set()
        if self.folder.log.exists():
            logged = {r.metrics.get("epoch") for r in load_records(self.folder.log)}
        for row in self.history:
            if row["epoch"] not in logged:
                append_record(self.folder.log, self._epoch_record(row))

    # -- one epoch -------------------------------------------------------------------------
    def _epoch(self, epoch: int, wrapped: nn.Module, criterion, on_step) -> None:
        config = self.config
        # global RNG (image-folder transforms without workers) also depends on seed and epoch
        torch.manual_seed(int(np.random.SeedSequence([config.seed, epoch, 2, self.world.rank])
                              .generate_state(1)[0]))  # fmt: skip
        self.train_loader.set_epoch(epoch)
        start = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.scheduler.get_last_lr()[0]}
        probe, cpu = LoadProbe().start(), time.process_time()
        row |= train_epoch(
            wrapped, self.train_loader, epoch=epoch, optimizer=self.optimizer,
            scheduler=self.scheduler, criterion=criterion, step=self.step, scaler=self.scaler,
            ema=self.ema, progress=self.progress, on_step=on_step,
        )  # fmt: skip
        row |= _contention(probe, time.process_time() - cpu, row["train_seconds"])
        average_buffers(self.model, self.world)
        label = f"epoch {epoch + 1} test"
        test = evaluate(self.model, self.test_loader, step=self.step, progress=self.progress,
                        label=label)  # fmt: skip
        row |= {f"test_{key}": value for key, value in test.items()}
        if self.ema is not None:
            average_buffers(self.ema.module, self.world)
            ema = evaluate(self.ema.module, self.test_loader, step=self.step,
                           progress=self.progress, label=f"{label} (EMA)")  # fmt: skip
            row |= {f"ema_test_{key}": value for key, value in ema.items()}
        row["epoch_seconds"] = time.perf_counter() - start
        self.history.append(row)
        if self.world.is_main:
            ckpt.save_checkpoint(self.folder.checkpoint, self._state(epoch + 1))
            append_record(self.folder.log, self._epoch_record(row))
        barrier(self.world)
        self.echo(_summary(row, config.epochs, self.ema is not None))

    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model_name": self.named.name,
            "config": self.config.as_dict(),
            "classes": list(self.dataset.classes),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": None if self.ema is None else self.ema.state_dict(),
            "rng": ckpt.rng_state(),
            "history": self.history,
        }

    # -- records ---------------------------------------------------------------------------
    def _epoch_record(self, row: dict[str, Any]) -> Record:
        config = {key: getattr(self.config, key) for key in ("data", "recipe", "seed", "epochs")}
        config["out"] = str(self.folder.out)
        return Record("epoch", self.named.name, config=config, metrics=row)

    def _record(self, status: str = "ok", error: str | None = None, **metrics) -> Record:
        config = self.config.as_dict() | run_info(self.world)
        config |= {
            "resolution": self.named.spec.resolution,
            "conventions": self.named.spec.conventions(),
            "out": str(self.folder.out),
        }
        return Record(
            "train", self.named.name, status=status, error=error, config=config, metrics=metrics,
            cost=model_cost(self.named.spec).totals(), env=environment(str(self.world.device)),
        )  # fmt: skip

    def _final(self) -> Record:
        digests = gather_objects(weights_digest(self.model), self.world)
        last = self.history[-1]
        prefix = "ema_test_" if self.ema is not None else "test_"
        train_seconds = sum(row["train_seconds"] for row in self.history)
        contended = list(
            dict.fromkeys(r for row in self.history for r in row.get("contention", ()))
        )
        metrics = {
            "top1": last[f"{prefix}top1"],
            "top5": last[f"{prefix}top5"],
            "loss": last[f"{prefix}loss"],
            "weights": "ema" if self.ema is not None else "raw",
            "raw_top1": last["test_top1"],
            "epochs": last["epoch"],
            "wall_time_s": sum(row["epoch_seconds"] for row in self.history),
            "train_images_per_s": sum(r["train_images"] for r in self.history) / train_seconds,
            "threads": torch.get_num_threads(),
            "timer": "wall",
            # wall-timed throughput: other processes' work shows in it, so say where they ran
            "reliable": not contended,
            "unreliable_reasons": [f"contention during training: {r}" for r in contended],
            "eval_images_per_s": last["test_images"] / max(last["test_seconds"], 1e-9),
            "test_images": last["test_images"],
            "rank_digests": digests,
            "ranks_agree": len(set(digests)) == 1,
        }
        record = self._record(**metrics)
        if self.world.is_main:
            append_record(self.folder.results, record)
        self.echo(
            f"{self.named.name}: test top-1 {metrics['top1']:.2f}% top-5 {metrics['top5']:.2f}% "
            f"loss {metrics['loss']:.4f} ({metrics['weights']} weights) after {last['epoch']} "
            f"epochs, {metrics['wall_time_s']:.1f} s, {metrics['train_images_per_s']:.0f} train "
            f"images/s; record -> {self.folder.results}"
        )
        return record

    def _finished_record(self) -> Record | None:
        if not self.folder.results.exists():
            return None
        for record in reversed(load_records(self.folder.results)):
            same_run = record.config.get("out") == str(self.folder.out)
            if record.kind == "train" and record.status == "ok" and same_run:
                return record
        return None


def _contention(probe: LoadProbe, cpu_s: float, wall_s: float) -> dict[str, Any]:
    """The epoch's threads and what other work did to its training steps (its reasons)."""
    threads = torch.get_num_threads()
    ratio = wall_s / cpu_s if threads == 1 and cpu_s > 0 else None
    return {"threads": threads, "contention": probe.stop(threads, ratio).reasons()}


def _summary(row: dict[str, Any], epochs: int, ema: bool) -> str:
    text = (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} "
        f"top-1 {row['train_top1']:.2f}%  test loss {row['test_loss']:.4f} "
        f"top-1 {row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}%"
    )
    if ema:
        text += f"  EMA top-1 {row['ema_test_top1']:.2f}%"
    images_per_s = row["train_images"] / max(row["train_seconds"], 1e-9)
    return text + f"  lr {row['lr']:.4g}  {row['epoch_seconds']:.1f} s ({images_per_s:.0f} img/s)"


def check_folder(checkpoint: Path, *, resume: bool, overwrite: bool) -> None:
    """SasaBenchError where --resume finds no checkpoint, or a new run would land on one."""
    exists = checkpoint.exists()
    if resume and not exists:
        raise SasaBenchError(f"--resume: no checkpoint in {checkpoint.parent}")
    if exists and not resume and not overwrite:
        raise SasaBenchError(
            f"{checkpoint.parent} holds a run already: --resume continues it, --overwrite "
            "starts over, --out picks another folder"
        )

"""A training run started by another command (a report): one call, one record, never a raise."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from sasa_bench.records import Record
from sasa_bench.train.config import make_config
from sasa_bench.train.datasets import open_dataset
from sasa_bench.train.trainer import train


def run_folder(parent: Path, model: str) -> Path:
    """The run folder of `model` under `parent` (its name made safe for a file system)."""
    return parent / re.sub(r"[^A-Za-z0-9_.=-]+", "_", model)


#: seconds of training between two progress lines inside an epoch
HEARTBEAT_S = 10.0


def heartbeat(echo: Callable[[str], None], every_s: float = HEARTBEAT_S):
    """A step hook that says where the epoch is, at most once per `every_s` seconds (so that a
    log shows a long epoch advancing)."""
    last = [time.perf_counter()]

    def on_step(epoch: int, index: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= every_s:
            last[0] = now
            echo(f"epoch {epoch + 1}: {index + 1} steps done")

    return on_step


def train_record(
    model: str,
    *,
    data: str,
    recipe: str,
    epochs: int,
    device: str,
    attn_impl: str,
    out: Path,
    threads: int | None = None,
    seed: int = 0,
    echo: Callable[[str], None] | None = None,
) -> Record:
    """Train `model` (a canonical name, fitted to `data`) in the folder `out`, resuming where a
    checkpoint exists there; its log lines go to `echo` (default: nowhere). A run that fails is
    a failed Record."""
    try:
        config = make_config(
            model=model,
            data=data,
            recipe=recipe,
            epochs=epochs,
            device=device,
            attn_impl=attn_impl,
            threads=threads,
            seed=seed,
        )
        echo = echo or (lambda _: None)
        return train(
            config,
            open_dataset(data),
            out=out,
            resume=(out / "checkpoint.pt").exists(),
            overwrite=True,
            results=out / "results.jsonl",
            echo=echo,
            on_step=heartbeat(echo),
        )
    except Exception as error:  # a failed run is a record; the caller goes on
        return Record(
            "train",
            model,
            status="failed",
            error=f"{type(error).__name__}: {error}",
            config={"data": data, "epochs": epochs, "recipe": recipe, "seed": seed},
        )

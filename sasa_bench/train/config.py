"""What a training run is asked to do: one frozen `TrainConfig`, built from a named recipe plus
the flags the user gave.

Recipes are data. `small` is sized for the embedded digits on a laptop CPU; `paper` is the
paper's ImageNet recipe (appendix of Ramachandran et al. 2019), with the values the paper does
not state marked as ours in `PAPER_UNSTATED`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from sasa_bench.errors import SasaBenchError, UnknownNameError

OPTIMIZERS = ("sgd-nesterov", "adamw")
SCHEDULES = ("cosine", "constant")
AMP_DTYPES = ("bf16", "fp16")


@dataclass(frozen=True)
class Recipe:
    """Training hyperparameters; `lr` is the peak rate for a global batch of `lr_batch`
    (scaled linearly to the batch actually used, unless --lr is given)."""

    epochs: int
    batch_size: int  # global: split over the processes of a distributed run
    lr: float
    lr_batch: int
    optimizer: str
    momentum: float  # SGD momentum (AdamW: beta1)
    warmup_epochs: float
    schedule: str
    label_smoothing: float
    weight_decay: float
    ema: float | None  # decay of the weight EMA, None = off
    bn_momentum: float | None  # torch convention (1 - TF decay); None = torch default 0.1


RECIPES: dict[str, Recipe] = {
    # Chosen in a few 3-epoch CPU runs on the digits, judged on 288 images held out of the
    # training split (docs/training.md); AdamW beat Nesterov SGD for the SASA nets there.
    "small": Recipe(
        epochs=10,
        batch_size=32,
        lr=0.008,
        lr_batch=32,
        optimizer="adamw",
        momentum=0.9,
        warmup_epochs=0.0,
        schedule="cosine",
        label_smoothing=0.0,
        weight_decay=0.05,
        ema=None,
        bn_momentum=None,
    ),
    # 130 epochs, Nesterov, lr 1.6 at batch 4096 with 10 warm-up epochs then cosine, BN decay
    # 0.9999, EMA 0.9999 (paper appendix). Label smoothing and weight decay: PAPER_UNSTATED.
    "paper": Recipe(
        epochs=130,
        batch_size=4096,
        lr=1.6,
        lr_batch=4096,
        optimizer="sgd-nesterov",
        momentum=0.9,
        warmup_epochs=10.0,
        schedule="cosine",
        label_smoothing=0.1,
        weight_decay=1e-4,
        ema=0.9999,
        bn_momentum=1e-4,
    ),
}
#: Values of the `paper` recipe that the paper does not state (conventional ResNet choices).
PAPER_UNSTATED = ("label_smoothing", "weight_decay", "momentum", "augmentation")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights, plus where and how the run executes.
    `SAME_ON_RESUME` fields must match the checkpoint's when a run is resumed."""

    model: str  # canonical model name (resolution and classes fitted to the data)
    data: str  # data spec, e.g. "digits", "cifar10:/data/cifar"
    recipe: str
    epochs: int
    batch_size: int
    lr: float  # peak learning rate actually used
    optimizer: str
    momentum: float
    warmup_epochs: float
    schedule: str
    label_smoothing: float
    weight_decay: float
    ema: float | None
    bn_momentum: float | None
    seed: int = 0
    subset: int | None = None  # smoke switch: at most this many train and test images
    amp: str | None = None
    channels_last: bool = False
    attn_impl: str = "reference"
    device: str = "auto"
    workers: int = 4  # data-loader processes (image folders only)
    threads: int | None = None  # torch intra-op threads on a CPU; None: 1

    def __post_init__(self) -> None:
        # each message names the flag that sets the field (a recipe's value too can be bad
        # beside a flag: --warmup-epochs 10 of the paper recipe with --epochs 3)
        for name in ("lr", "momentum", "warmup_epochs", "label_smoothing", "weight_decay",
                     "ema", "bn_momentum"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise SasaBenchError(f"{_flag(name)} must be a finite number, got {value}")
        checks = {
            "epochs": (self.epochs >= 1, ">= 1"),
            "batch_size": (self.batch_size >= 1, ">= 1"),
            "lr": (self.lr > 0, "> 0"),
            "momentum": (0 <= self.momentum < 1, "in [0, 1)"),
            "warmup_epochs": (
                0 <= self.warmup_epochs < self.epochs,
                f">= 0 and below --epochs ({self.epochs})",
            ),
            "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, ">= 0"),
            "ema": (self.ema is None or 0 < self.ema < 1, "in (0, 1), or 0 for none"),
            "bn_momentum": (self.bn_momentum is None or 0 < self.bn_momentum <= 1, "in (0, 1]"),
            "subset": (self.subset is None or self.subset >= 1, ">= 1"),
            "threads": (self.threads is None or self.threads >= 1, ">= 1"),
            "workers": (self.workers >= 0, ">= 0"),
        }
        for name, (ok, bound) in checks.items():
            if not ok:
                raise SasaBenchError(f"{_flag(name)} must be {bound}, got {getattr(self, name)}")
        if self.optimizer == "sgd-nesterov" and self.momentum == 0:
            raise SasaBenchError("--optimizer sgd-nesterov needs --momentum > 0, got 0")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.amp is not None:
            _check_choice("amp", self.amp, AMP_DTYPES)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def mismatches(self, other: TrainConfig) -> list[str]:
        """Fields that change the trained weights and differ from `other`'s."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [
            f"{k}: {theirs[k]!r} -> {mine[k]!r}" for k in SAME_ON_RESUME if mine[k] != theirs[k]
        ]


#: Fields a resumed run must share with its checkpoint (the rest only affect how it runs).
SAME_ON_RESUME = tuple(
    f.name
    for f in dataclasses.fields(TrainConfig)
    if f.name not in {"device", "workers", "attn_impl", "channels_last", "threads"}
)


def make_config(*, model: str, data: str, recipe: str = "small", **flags: Any) -> TrainConfig:
    """The recipe's values, replaced by every flag that is not None. Without an explicit `lr`,
    the recipe's rate is scaled linearly from its `lr_batch` to the batch size used."""
    if recipe not in RECIPES:
        raise UnknownNameError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    base = dataclasses.asdict(RECIPES[recipe])
    lr_batch = base.pop("lr_batch")
    given = {key: value for key, value in flags.items() if value is not None}
    unknown = set(given) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise SasaBenchError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    values = {**base, **given}
    if values["ema"] == 0:  # --ema 0 turns the recipe's EMA off
        values["ema"] = None
    if "lr" not in given:
        values["lr"] = base["lr"] * values["batch_size"] / lr_batch
    return TrainConfig(model=model, data=data, recipe=recipe, **values)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SasaBenchError(f"{name} must be one of {', '.join(choices)}; got {value!r}")

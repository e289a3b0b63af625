"""Model specifications: frozen dataclasses that fully describe a network.

Conv ResNets, SASA ResNets and mixed ones differ only in the values of these fields; one generic
net (`sasa_bench.models.resnet.ResNet`) is built from any of them, and the analytic cost
(`sasa_bench.models.resnet.model_cost`) is computed from them without building anything.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from sasa_bench.errors import SpecError
from sasa_bench.layers.sasa import LOGITS, PADDINGS, POSITIONAL, QKV_INITS, QSCALES

#: Bottleneck blocks per layer group for each depth.
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    26: (1, 2, 4, 1),
    38: (2, 3, 5, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
#: Base width (channels of the spatial layer) of each group; a block outputs 4x that.
GROUP_WIDTHS = (64, 128, 256, 512)
STEM_WIDTH = 64
EXPANSION = 4

STEMS = ("conv", "attention", "attention-plain", "attention-convvalues")
MIXERS = {"c": "3x3 convolution", "a": "SASA attention"}


@dataclass(frozen=True)
class AttentionSpec:
    """Options of every SASA layer of a model (Eq. 3 of the paper)."""

    kernel_size: int = 7  # spatial extent k of the centred window
    heads: int = 8
    pos: str = "relative"  # relative | absolute | none (Table 5)
    logits: str = "qk+qr"  # qk+qr | qr (Table 6)
    padding: str = "zero"  # zero (Eq. 3 as written) | mask (padded keys out of the softmax)
    qscale: str = "none"  # none (Eq. 3 as written) | rsqrt (q scaled by 1/sqrt(d))
    qkv_init: str = "separate"  # separate (as three 1x1 convs) | fused (one conv of 3x width)

    def __post_init__(self) -> None:
        k = self.kernel_size
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise SpecError(f"k must be a positive odd integer (a centred window), got {k!r}")
        if not isinstance(self.heads, int) or self.heads < 1:
            raise SpecError(f"heads must be a positive integer, got {self.heads!r}")
        _check_choice("pos", self.pos, POSITIONAL)
        _check_choice("logits", self.logits, LOGITS)
        _check_choice("padding", self.padding, PADDINGS)
        _check_choice("qscale", self.qscale, QSCALES)
        _check_choice("qkv_init", self.qkv_init, QKV_INITS)
        if self.logits == "qr" and self.pos != "relative":
            raise SpecError("logits 'qr' (no keys) needs pos 'relative': q.r is the only logit")

    @property
    def uses_keys(self) -> bool:
        return self.logits == "qk+qr"

    def options(self) -> dict[str, object]:
        """The keyword options of `SASA2d` and `SASA2d.cost` these fields are."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelSpec:
    """A ResNet-style classifier: depth, stem, a conv/attention mixer per layer group, width."""

    depth: int = 50
    stem: str = "conv"
    stages: str = "cccc"  # one letter per layer group: c = 3x3 conv, a = SASA attention
    attention: AttentionSpec = field(default_factory=AttentionSpec)
    width: float = 1.0  # multiplier of every layer's base width (Figure 5)
    num_classes: int = 1000
    stem_mixtures: int = 4  # m of the spatially-aware values of the attention stem
    stem_heads: int = 4
    # Absolute positional embeddings are tables over the feature map, so they need its size.
    resolution: int = 224
    # The last BatchNorm of every residual branch starts with gamma = 0, so each block starts as
    # its shortcut (Google's Cloud TPU ResNet code, init_zero=True; Goyal et al. 2017).
    zero_init_last: bool = True

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise SpecError(f"depth must be one of {sorted(DEPTHS)}, got {self.depth!r}")
        _check_choice("stem", self.stem, STEMS)
        if len(self.stages) != 4 or any(c not in MIXERS for c in self.stages):
            raise SpecError(
                f"stages must be 4 letters of c (conv) / a (attention), e.g. 'ccaa', "
                f"got {self.stages!r}"
            )
        if not (isinstance(self.width, (int, float)) and math.isfinite(self.width)):
            raise SpecError(f"width must be a finite number, got {self.width!r}")
        if not self.width > 0:
            raise SpecError(f"width must be > 0, got {self.width!r}")
        if not isinstance(self.resolution, int) or self.resolution < 1:
            raise SpecError(f"resolution must be a positive integer, got {self.resolution!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise SpecError(f"num_classes must be a positive integer, got {self.num_classes!r}")
        if self.stem_mixtures < 1 or self.stem_heads < 1:
            raise SpecError("stem_mixtures and stem_heads must be positive")
        if not isinstance(self.zero_init_last, bool):
            raise SpecError(f"zero_init_last must be true or false, got {self.zero_init_last!r}")
        if self.stem != "conv" and self.resolution % 4:
            raise SpecError(
                f"an attention stem works on 4x4 blocks: resolution must be a multiple of 4, "
                f"got {self.resolution}"
            )

    # -- derived values -------------------------------------------------------------------
    @property
    def channel_divisor(self) -> int:
        """Channels are rounded to a multiple of 2 x heads: each head then holds a half of
        the row embedding and a half of the column embedding (Eq. 3's r is their concat)."""
        return 2 * max(self.attention.heads, self.stem_heads)

    def channels(self, base: int) -> int:
        """Width-scaled channel count, rounded to the nearest multiple of `channel_divisor`."""
        return round_channels(base * self.width, self.channel_divisor)

    def rounding_note(self) -> str | None:
        """One line saying how rounding to `channel_divisor` changed the layer widths (None
        where every width is its base x width exactly): `heads=7` makes every width a
        multiple of 14, so a model with heads changed has other channel counts too."""
        bases = dict.fromkeys((STEM_WIDTH, *GROUP_WIDTHS, *(EXPANSION * b for b in GROUP_WIDTHS)))
        changed = {b: self.channels(b) for b in bases if self.channels(b) != b * self.width}
        if not changed:
            return None
        heads, stem_heads = self.attention.heads, self.stem_heads
        which = f"heads={heads}" if heads >= stem_heads else f"stem_heads={stem_heads}"
        widths = ", ".join(f"{base * self.width:g}->{c}" for base, c in changed.items())
        return (
            f"channels rounded to multiples of {self.channel_divisor} (2 x {which}, width "
            f"{self.width:g}): {widths}"
        )

    @property
    def stem_width(self) -> int:
        return self.channels(STEM_WIDTH)

    @property
    def blocks(self) -> tuple[int, int, int, int]:
        return DEPTHS[self.depth]

    @property
    def has_attention(self) -> bool:
        return "a" in self.stages or self.stem != "conv"

    def conventions(self) -> dict[str, object]:
        """The training conventions this model is built with, as every record states them
        (docs/models.md says where each comes from)."""
        found: dict[str, object] = {"zero_init_last": self.zero_init_last}
        if "a" in self.stages:
            attention = self.attention
            found |= {
                "padding": attention.padding,
                "qscale": attention.qscale,
                "qkv_init": attention.qkv_init,
            }
        return found

    def replace(self, **overrides: object) -> ModelSpec:
        """A copy with fields replaced; attention fields (k, heads, pos, logits) go through."""
        attention = {
            key: overrides.pop(key)
            for key in list(overrides)
            if key in ATTENTION_FIELDS or key in ATTENTION_ALIASES
        }
        attention = {ATTENTION_ALIASES.get(key, key): value for key, value in attention.items()}
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            known = sorted(MODEL_FIELDS | ATTENTION_FIELDS | set(ATTENTION_ALIASES))
            raise SpecError(f"unknown model option(s) {sorted(unknown)}; known: {known}")
        if attention:
            overrides["attention"] = dataclasses.replace(self.attention, **attention)
        return dataclasses.replace(self, **overrides)


def round_channels(value: float, divisor: int) -> int:
    """Nearest multiple of `divisor`, never below it and never 10 % below `value`
    (timm's make_divisible rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


ATTENTION_FIELDS = {f.name for f in dataclasses.fields(AttentionSpec)}
ATTENTION_ALIASES = {"k": "kernel_size"}
MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelSpec)} - {"attention"}

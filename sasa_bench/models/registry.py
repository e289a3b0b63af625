"""Presets and the model-name grammar.

    MODEL    := PRESET [":" OPTION ("," OPTION)*] | THIRD-PARTY
    PRESET   := resnet26|38|50|101 | sasa26|38|50|101 | sasa26|38|50|101-full
    THIRD-PARTY := (timm | torchvision) ":" NAME [":" OPTION ("," OPTION)*]   (models/thirdparty.py)
    OPTION   := KEY "=" VALUE      keys: stages stem k heads pos logits padding qscale
                                          qkv_init width num_classes depth stem_mixtures
                                          stem_heads resolution zero_init_last

`sasa50:stages=ccaa,k=9` is SASA ResNet-50 with conv in groups 1-2 and a 9x9 window. Every
model has one canonical name: its preset plus the options that differ from it, sorted.
A third-party name gives a NamedModel whose spec is a ThirdPartySpec (built by its library).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass

from sasa_bench.errors import SpecError, UnknownNameError
from sasa_bench.models.spec import (
    ATTENTION_ALIASES,
    ATTENTION_FIELDS,
    DEPTHS,
    MODEL_FIELDS,
    AttentionSpec,
    ModelSpec,
)
from sasa_bench.models.thirdparty import ThirdPartySpec, is_thirdparty, parse_thirdparty


def _presets() -> dict[str, ModelSpec]:
    presets = {}
    for depth in DEPTHS:
        presets[f"resnet{depth}"] = ModelSpec(depth=depth)
        presets[f"sasa{depth}"] = ModelSpec(depth=depth, stages="aaaa")
        presets[f"sasa{depth}-full"] = ModelSpec(depth=depth, stages="aaaa", stem="attention")
    return presets


PRESETS: dict[str, ModelSpec] = _presets()
DESCRIPTIONS = {
    "resnet": "conv ResNet-{d} (baseline)",
    "sasa": "SASA ResNet-{d}: conv stem + attention in every group",
    "full": "SASA ResNet-{d}: attention stem + attention in every group",
}


@dataclass(frozen=True)
class NamedModel:
    name: str  # canonical: preset + differing options
    preset: str  # for a third-party model, SOURCE:NAME
    spec: ModelSpec | ThirdPartySpec

    def replace(self, **options: object) -> NamedModel:
        """The same preset with spec fields replaced (typed values; k for kernel_size), under
        its canonical name."""
        spec = self.spec.replace(**options)
        if isinstance(spec, ThirdPartySpec):
            return NamedModel(spec.name, self.preset, spec)
        return NamedModel(canonical_name(self.preset, spec), self.preset, spec)


def describe(preset: str) -> str:
    spec = PRESETS[preset]
    kind = "resnet" if spec.stages == "cccc" else ("sasa" if spec.stem == "conv" else "full")
    return DESCRIPTIONS[kind].format(d=spec.depth)


def get_preset(name: str) -> ModelSpec:
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(PRESETS)}"
        raise UnknownNameError(f"unknown model {name!r}{hint}") from None


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _option_text(key: str, value: object) -> str:
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def _field_type(key: str) -> type:
    owner = AttentionSpec if key in ATTENTION_FIELDS else ModelSpec
    hints = typing.get_type_hints(owner)
    return hints[key]


def convert_option(key: str, value: str) -> object:
    """Turn the text of one option into the field's type; errors name `key` as written."""
    field = ATTENTION_ALIASES.get(key, key)
    if field not in ATTENTION_FIELDS | MODEL_FIELDS:
        known = sorted(MODEL_FIELDS | ATTENTION_FIELDS | set(ATTENTION_ALIASES))
        raise SpecError(f"unknown model option {key!r}; known: {', '.join(known)}")
    value = value.strip()
    if not value:
        raise SpecError(f"model option {key!r} has no value: write {key}=VALUE")
    kind = _field_type(field)
    if kind is bool:
        if value.lower() not in BOOLEANS:
            raise SpecError(f"option {key}={value!r}: expected true or false")
        return BOOLEANS[value.lower()]
    try:
        converted = kind(value)
    except ValueError:
        raise SpecError(f"option {key}={value!r}: expected {kind.__name__}") from None
    if isinstance(converted, float) and not math.isfinite(converted):
        raise SpecError(f"option {key}={value!r}: expected a finite number")
    return converted


def parse_options(text: str, where: str | None = None) -> dict[str, object]:
    """`k=9,width=0.5` -> {"kernel_size": 9, "width": 0.5} (typed, aliases resolved). A key
    given twice (or under two names, as k and kernel_size) is an error."""
    options: dict[str, object] = {}
    written: dict[str, str] = {}  # field -> the key as written
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SpecError(f"model option {item!r} is not KEY=VALUE (in {where or text!r})")
        field = ATTENTION_ALIASES.get(key, key)
        if field in written:
            first = written[field]
            same = "given twice" if first == key else f"repeats {first!r} (the same option)"
            raise SpecError(f"model option {key!r} {same} in {where or repr(text)}: keep one")
        options[field] = convert_option(key, value)
        written[field] = key
    return options


def parse_model(text: str) -> NamedModel:
    """A model name of the grammar: PRESET[:KEY=VALUE,...]."""
    return with_options(text, "")


def with_options(model: str, options: str | Mapping[str, object]) -> NamedModel:
    """The model named `model` with more options after its own, as text (`k=9,width=0.5`) or
    as a mapping of option names to values. An option added here replaces the name's own
    (the last wins); a key repeated inside one text is an error."""
    if is_thirdparty(model):
        if isinstance(options, str):
            extra = dict(item.strip().partition("=")[::2] for item in options.split(",") if item)
        else:
            extra = dict(options)
        spec = parse_thirdparty(model, extra)
        return NamedModel(spec.name, f"{spec.source}:{spec.arch}", spec)
    preset, _, own = model.strip().partition(":")
    if isinstance(options, str):
        extra = parse_options(options)
    else:
        extra = {
            ATTENTION_ALIASES.get(key, key): convert_option(key, _value_text(value))
            for key, value in options.items()
        }
    merged = {**parse_options(own, repr(model)), **extra}
    return NamedModel(preset, preset, get_preset(preset)).replace(**merged)


def _value_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def spec_options(spec: ModelSpec) -> dict[str, object]:
    """All options of a spec as one flat dict (attention fields included, k for kernel_size)."""
    flat = {
        f.name: getattr(spec, f.name) for f in dataclasses.fields(spec) if f.name != "attention"
    }
    flat.update(dataclasses.asdict(spec.attention))
    aliases = {v: k for k, v in ATTENTION_ALIASES.items()}
    return {aliases.get(key, key): value for key, value in flat.items()}


def canonical_name(preset: str, spec: ModelSpec) -> str:
    base = spec_options(PRESETS[preset])
    diff = {k: v for k, v in spec_options(spec).items() if base[k] != v}
    if not diff:
        return preset
    return preset + ":" + ",".join(_option_text(k, v) for k, v in sorted(diff.items()))

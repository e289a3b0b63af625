"""Third-party models by name: `timm:NAME` and `torchvision:NAME`, built without weights.

    MODEL  := SOURCE ":" NAME [":" OPTION ("," OPTION)*]
    SOURCE := timm | torchvision
    OPTION := resolution=INT | num_classes=INT

`timm:halonet26t` is timm's HaloNet-26t at its default input size (256, from its pretrained_cfg);
`timm:swin_tiny_patch4_window7_224:resolution=112` builds it for 112x112 (timm's `img_size`, where
the model takes one; otherwise only the input is smaller). NAME may be an fnmatch pattern where a
list of models is asked for (`expand`): `timm:halonet*`. Nothing is downloaded: every model is
built with `pretrained=False` (torchvision: `weights=None`).

There is no analytic count for these models: their cost is traced (`sasa_bench.counters`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import sys
from dataclasses import dataclass

import torch

from sasa_bench.errors import SasaBenchError, SpecError, UnknownNameError

SOURCES = ("timm", "torchvision")
OPTIONS = ("resolution", "num_classes")
PATTERN_CHARS = "*?["
#: the input size where a torchvision model states none in its weights' transforms
TORCHVISION_RESOLUTION = 224


def is_thirdparty(text: str) -> bool:
    """Whether a model name names a timm or torchvision model."""
    return text.strip().partition(":")[0] in SOURCES


def torchvision_install() -> str:
    """The pip command that adds the torchvision made for this torch without replacing it:
    a plain `pip install torchvision` takes PyPI's newest build, whose torch pin swaps a CPU
    torch for a CUDA one of another version (torchvision 0.(m + 15) goes with torch 2.m)."""
    version = torch.__version__.split("+")[0]
    major, minor = (int(part) for part in version.split(".")[:2])
    vision = f"'torchvision==0.{minor + 15}.*'" if major == 2 else "torchvision"
    pins = f"torch=={version} {vision}"
    if torch.version.cuda is None:  # a CPU build: both from PyTorch's CPU index
        return f"pip install {pins} --index-url https://download.pytorch.org/whl/cpu"
    return f"pip install {pins}"


def install_line(source: str) -> str:
    """How to add `source`: the extra, after the torchvision that keeps this torch."""
    return f"{torchvision_install()}, then pip install 'sasa-bench[{source}]'"


#: torchvision's ops whose fake (meta) kernels it registers without checking that its compiled
#: library loaded; every other op registration of torchvision checks `_has_ops()` first
_UNGUARDED_OPS = ("nms", "qnms")
_stand_in: list[torch.library.Library] = []  # kept alive: the schemas live as long as it does


def import_torchvision():
    """torchvision, imported; where its compiled ops cannot load beside this torch (a CUDA
    build of torchvision beside a CPU torch: `_C.so` needs libtorch_cuda), as torchvision
    itself means to run then: without them.

    torchvision imports without its compiled library by design (`extension._has_ops()` is then
    False and every op raises its own "Couldn't load custom C++ ops" error), except for two fake
    kernels it registers unguarded, which fail with "operator torchvision::nms does not exist".
    Only in that case, and only after torchvision said its library did not load, are those two
    schemas defined here (no kernel: calling them still fails as torchvision intends) and the
    import repeated. No classification model of timm or torchvision calls them."""
    try:
        import torchvision
    except ImportError:
        raise SasaBenchError(f"torchvision is not installed: {torchvision_install()}") from None
    except RuntimeError as error:
        extension = sys.modules.get("torchvision.extension")
        if "torchvision::nms" not in str(error) or extension is None or extension._has_ops():
            raise SasaBenchError(
                f"torchvision does not load with torch {torch.__version__} "
                f"({str(error).splitlines()[0][:120]}): {torchvision_install()}"
            ) from None
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        if not _stand_in:
            library = torch.library.Library("torchvision", "FRAGMENT")
            for op in _UNGUARDED_OPS:
                library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            _stand_in.append(library)
        import torchvision
    return torchvision


def without_compiled_ops() -> str | None:
    """A note where torchvision runs without its compiled ops (see `import_torchvision`)."""
    if not _stand_in:
        return None
    import torchvision

    return (
        f"torchvision {torchvision.__version__} runs without its compiled ops beside torch "
        f"{torch.__version__} (no model here calls them); the matching build: "
        f"{torchvision_install()}"
    )


def import_source(source: str):
    """The timm or torchvision.models module; a missing package is one line with its install."""
    if source == "torchvision":
        return import_torchvision().models
    if importlib.util.find_spec("timm") is None:
        raise SasaBenchError(f"timm models need timm: {install_line('timm')}")
    import_torchvision()  # timm imports torchvision (transforms, FrozenBatchNorm2d)
    import timm

    return timm


@dataclass(frozen=True)
class ThirdPartySpec:
    """A timm or torchvision model at one input size: what builds it and what names it."""

    source: str  # "timm" or "torchvision"
    arch: str  # the library's own model name (timm: with a pretrained tag if one was given)
    resolution: int
    num_classes: int
    default_resolution: int  # the library's input size for it (the canonical name omits it)
    default_num_classes: int

    @property
    def name(self) -> str:
        """`timm:halonet26t`, plus the options that differ from the library's defaults."""
        options = [
            f"{key}={getattr(self, key)}"
            for key in OPTIONS
            if getattr(self, key) != getattr(self, f"default_{key}")
        ]
        return f"{self.source}:{self.arch}" + (":" + ",".join(options) if options else "")

    def replace(self, **options: object) -> ThirdPartySpec:
        return dataclasses.replace(self, **check_options(self.source, options))

    def conventions(self) -> dict[str, object]:
        """sasa_bench's training conventions do not apply: the library's own init is used."""
        return {}

    def rounding_note(self) -> str | None:
        return None

    def build(self) -> torch.nn.Module:
        """The model, randomly initialised (no weights are fetched)."""
        library = import_source(self.source)
        if self.source == "timm":
            build, size_key = library.create_model, "img_size"
            options = {"pretrained": False, "num_classes": self.num_classes}
        else:
            build, size_key = library.get_model, "image_size"
            options = {"weights": None, "num_classes": self.num_classes}
        if self.resolution != self.default_resolution:
            try:  # a model with position tables or windows is built for its input size
                return build(self.arch, **options, **{size_key: self.resolution})
            except TypeError as error:  # the model takes any input size
                if size_key not in str(error):
                    raise
        return build(self.arch, **options)


def check_options(source: str, options: dict[str, object]) -> dict[str, object]:
    """The options typed and checked: positive integers of OPTIONS only."""
    checked = {}
    for key, value in options.items():
        if key not in OPTIONS:
            raise SpecError(
                f"option {key!r} does not apply to {source} models; they take "
                f"{' and '.join(OPTIONS)}"
            )
        try:
            number = int(str(value).strip())
        except ValueError:
            raise SpecError(f"option {key}={value!r}: expected a positive integer") from None
        if number < 1:
            raise SpecError(f"option {key}={value!r}: expected a positive integer")
        checked[key] = number
    return checked


def parse_thirdparty(text: str, extra: dict[str, object] | None = None) -> ThirdPartySpec:
    """`timm:NAME[:KEY=VALUE,...]`, with `extra` options after the name's own (they win)."""
    source, _, rest = text.strip().partition(":")
    arch, _, own = rest.partition(":")
    arch = arch.strip()
    if not arch:
        raise SpecError(f"{text!r} names no model: write {source}:NAME ({list_hint(source)})")
    if any(char in arch for char in PATTERN_CHARS):
        raise SpecError(f"{text!r} is a pattern; here one model is needed ({list_hint(source)})")
    options: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in own.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(f"model option {item!r} is not KEY=VALUE (in {text!r})")
        if key.strip() in options:
            raise SpecError(f"model option {key.strip()!r} given twice in {text!r}: keep one")
        options[key.strip()] = value
    resolution, num_classes = defaults(source, arch)
    spec = ThirdPartySpec(source, arch, resolution, num_classes, resolution, num_classes)
    return spec.replace(**{**options, **(extra or {})})


def list_hint(source: str) -> str:
    return f"`sasa-bench models '{source}:PATTERN'` lists the names, e.g. '{source}:resnet*'"


def defaults(source: str, arch: str) -> tuple[int, int]:
    """The library's input size and class count for `arch`; an unknown name is an error that
    names the closest ones and how to list the rest."""
    library = import_source(source)
    known = library.list_models()
    if source == "timm":
        if not library.is_model(arch):
            raise _unknown(source, arch, known)
        config = library.models.get_pretrained_cfg(arch)
        size = config.input_size[-1] if config and config.input_size else 224
        return int(size), int(config.num_classes) if config and config.num_classes else 1000
    if arch not in known:
        raise _unknown(source, arch, known)
    try:
        transforms = library.get_model_weights(arch).DEFAULT.transforms
        size = transforms.keywords.get("crop_size", TORCHVISION_RESOLUTION)
    except (AttributeError, ValueError):  # a model without weights: torchvision's usual size
        size = TORCHVISION_RESOLUTION
    return int(size[0] if isinstance(size, (list, tuple)) else size), 1000


def _unknown(source: str, arch: str, known: list[str]) -> UnknownNameError:
    close = difflib.get_close_matches(arch, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return UnknownNameError(f"unknown {source} model {arch!r}; {hint}{list_hint(source)}")


def expand(pattern: str) -> list[str]:
    """`timm:halonet*` -> the matching names, each with the pattern's options; a name without
    a pattern character is returned as it is."""
    source, _, rest = pattern.strip().partition(":")
    arch, sep, options = rest.partition(":")
    if not any(char in arch for char in PATTERN_CHARS):
        return [pattern.strip()]
    library = import_source(source)
    found = library.list_models(arch) if source == "timm" else library.list_models(include=arch)
    if not found:
        raise UnknownNameError(f"no {source} model matches {arch!r}; {list_hint(source)}")
    return [f"{source}:{name}{sep}{options}" for name in found]

import re

import pytest

from sasa_bench.errors import SpecError, UnknownNameError
from sasa_bench.models.registry import PRESETS, canonical_name, parse_model, with_options
from sasa_bench.models.spec import ModelSpec, round_channels


def test_presets_cover_every_depth_and_family():
    for depth in (26, 38, 50, 101):
        assert PRESETS[f"resnet{depth}"].stages == "cccc"
        assert PRESETS[f"sasa{depth}"].stages == "aaaa"
        assert PRESETS[f"sasa{depth}"].stem == "conv"
        assert PRESETS[f"sasa{depth}-full"].stem == "attention"


def test_grammar_applies_options_with_their_types():
    model = parse_model("sasa50:stages=ccaa,k=9,width=0.5,pos=none")
    assert model.spec.stages == "ccaa"
    assert model.spec.attention.kernel_size == 9
    assert model.spec.width == 0.5
    assert model.spec.attention.pos == "none"
    assert model.name == "sasa50:k=9,pos=none,stages=ccaa,width=0.5"


def test_options_added_to_a_model_name_as_text_or_mapping_the_last_one_wins():
    assert with_options("sasa50:k=9", "width=0.5").name == "sasa50:k=9,width=0.5"
    assert with_options("sasa50:k=9", {"k": 5, "resolution": 64}).name == "sasa50:k=5,resolution=64"
    assert with_options("sasa50", "").name == "sasa50" == with_options("sasa50:k=7", {}).name
    with pytest.raises(SpecError, match="unknown model option 'kk'"):
        with_options("sasa50", {"kk": 3})
    with pytest.raises(UnknownNameError, match="unknown model 'sasa5'"):
        with_options("sasa5", "k=9")


def test_a_named_model_replaced_keeps_its_preset_and_renames_itself():
    named = parse_model("sasa26:width=0.25")
    fitted = named.replace(resolution=32, num_classes=10)
    assert fitted.name == "sasa26:num_classes=10,resolution=32,width=0.25"
    assert fitted.preset == "sasa26" and fitted.spec.resolution == 32
    assert fitted.replace(k=9).spec.attention.kernel_size == 9
    assert named.name == "sasa26:width=0.25"  # unchanged


def test_canonical_name_drops_options_equal_to_the_preset():
    assert parse_model("sasa50:k=7,stages=aaaa").name == "sasa50"
    assert parse_model(parse_model("resnet26:width=1.5").name).name == "resnet26:width=1.5"
    assert canonical_name("resnet50", PRESETS["sasa50"]) == "resnet50:stages=aaaa"


@pytest.mark.parametrize(
    "text, message",
    [
        ("sasa50:stages=cca", "4 letters"),
        ("sasa50:stages=ccxa", "4 letters"),
        ("sasa50:k=4", "odd"),
        ("sasa50:k=0", "odd"),
        ("sasa50:width=0", "width must be > 0"),
        ("sasa50:width=-1", "width must be > 0"),
        ("sasa50:pos=learned", "pos must be one of"),
        ("sasa50:logits=qk", "logits must be one of"),
        ("sasa50:logits=qr,pos=none", "needs pos 'relative'"),
        ("sasa50:stem=patchify", "stem must be one of"),
        ("sasa50:colour=red", "unknown model option"),
        ("sasa50:k", "KEY=VALUE"),
        ("sasa50:k=seven", "expected int"),
        ("sasa50-full:resolution=66", "multiple of 4"),
        ("resnet50:depth=34", "depth must be one of"),
    ],
)
def test_bad_options_raise_a_clear_error(text, message):
    with pytest.raises(SpecError, match=message):
        parse_model(text)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean sasa50"):
        parse_model("sasa05")
    with pytest.raises(UnknownNameError, match="known: resnet26"):
        parse_model("vgg16")


@pytest.mark.parametrize("width", [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0])
def test_width_channels_divide_into_heads_and_embedding_halves(width):
    spec = ModelSpec(width=width, stages="aaaa")
    for base in (64, 128, 256, 512, 2048):
        channels = spec.channels(base)
        assert channels % (2 * spec.attention.heads) == 0
        assert abs(channels - base * width) <= spec.channel_divisor  # nearest multiple, or next


def test_round_channels_never_drops_more_than_ten_percent():
    assert round_channels(64, 16) == 64
    assert round_channels(24, 16) == 32  # 16 would lose a third
    assert round_channels(3, 16) == 16


@pytest.mark.parametrize(
    "text, message",
    [
        ("sasa26:k=7,k=9", "model option 'k' given twice in 'sasa26:k=7,k=9': keep one"),
        ("sasa26:k=7,kernel_size=9", "model option 'kernel_size' repeats 'k' (the same option)"),
        ("sasa26:kernel_size=7,k=9", "model option 'k' repeats 'kernel_size'"),
        ("sasa26:width=0.5,width=0.5", "'width' given twice"),
        ("sasa26:width=inf", "option width='inf': expected a finite number"),
        ("sasa26:width=-inf", "option width='-inf': expected a finite number"),
        ("sasa26:width=nan", "option width='nan': expected a finite number"),
        ("sasa26:width=1e999", "option width='1e999': expected a finite number"),
        ("sasa26:resolution=1e999", "option resolution='1e999': expected int"),
        ("sasa26:resolution=0", "resolution must be a positive integer"),
        ("sasa26:k=", "model option 'k' has no value: write k=VALUE"),
        ("sasa26:k= ", "model option 'k' has no value"),
        ("sasa26:heads=,k=9", "model option 'heads' has no value"),
        ("sasa26:k=x", "option k='x': expected int"),
    ],
)
def test_repeated_non_finite_and_empty_options_name_the_key_as_written(text, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_model(text)


def test_options_added_by_code_still_replace_the_names_own():
    assert with_options("sasa26:k=7", "k=9").spec.attention.kernel_size == 9
    assert with_options("sasa26:k=7", {"kernel_size": 9}).spec.attention.kernel_size == 9
    assert with_options("sasa26:width=0.5", {"width": 0.25}).spec.width == 0.25
    assert with_options("sasa26", {"zero_init_last": False}).spec.zero_init_last is False
    with pytest.raises(SpecError, match="given twice"):
        with_options("sasa26", "k=9,k=5")  # one text: a repeat is a mistake
    with pytest.raises(SpecError, match="expected a finite number"):
        with_options("sasa26", {"width": float("inf")})  # as `--width inf` gives it


def test_a_spec_refuses_a_non_finite_width():
    with pytest.raises(SpecError, match="width must be a finite number"):
        ModelSpec(width=float("inf"))


def test_the_rounding_of_channels_to_the_heads_is_stated():
    assert parse_model("sasa26").spec.rounding_note() is None
    assert parse_model("sasa26:width=0.5").spec.rounding_note() is None
    note = parse_model("sasa26:heads=7").spec.rounding_note()
    assert note == (
        "channels rounded to multiples of 14 (2 x heads=7, width 1): 64->70, 128->126, "
        "256->252, 512->518, 1024->1022, 2048->2044"
    )
    spec = parse_model("sasa26:heads=7").spec
    assert spec.stem_width == 70 and spec.channels(512) == 518  # built as the note says
    assert "2 x stem_heads=12" in parse_model("sasa26-full:stem_heads=12").spec.rounding_note()
    assert "19.2->32, 38.4->48" in parse_model("resnet26:width=0.3").spec.rounding_note()

"""Third-party models by name: the grammar, patterns, missing packages, and every command that
takes a model name (profile, bench and its record, report entries)."""

import importlib.util
import json
import sys

import pytest
import torch

from sasa_bench.cli import build_parser, main
from sasa_bench.cli.bench import expand_models
from sasa_bench.counters import run_counter
from sasa_bench.errors import SasaBenchError, SpecError, UnknownNameError
from sasa_bench.models.registry import parse_model, with_options
from sasa_bench.models.thirdparty import (
    ThirdPartySpec,
    expand,
    import_source,
    import_torchvision,
    parse_thirdparty,
    without_compiled_ops,
)

if importlib.util.find_spec("timm") is None:
    pytest.skip("timm is not installed (pip install -e '.[dev]')", allow_module_level=True)
timm = import_source("timm")  # torchvision first, as sasa_bench imports it
SMALL = "timm:resnet18:resolution=32"


def test_a_name_takes_the_library_defaults_and_the_canonical_name_omits_them():
    halo = parse_model("timm:halonet26t")
    assert isinstance(halo.spec, ThirdPartySpec)
    assert (halo.spec.resolution, halo.spec.num_classes) == (256, 1000)  # its pretrained_cfg
    assert parse_model("timm:halonet26t:resolution=256").name == "timm:halonet26t"
    small = with_options("timm:resnet50", {"resolution": 64, "num_classes": 10})
    assert small.name == "timm:resnet50:resolution=64,num_classes=10"
    assert parse_model(small.name) == small
    assert with_options(small.name, "resolution=96").spec.resolution == 96  # the last wins
    inception = parse_model("torchvision:inception_v3").spec
    assert (inception.resolution, inception.default_resolution) == (299, 299)


def test_the_built_model_takes_its_resolution():
    spec = parse_model("timm:vit_tiny_patch16_224:resolution=32,num_classes=10").spec
    model = spec.build().eval()
    assert model.patch_embed.img_size == (32, 32)  # built for 32, not only fed 32
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert spec.conventions() == {} and spec.rounding_note() is None


@pytest.mark.parametrize(
    "name, message",
    [
        ("timm:resnet50:k=3", "option 'k' does not apply to timm models; they take resolution"),
        ("timm:resnet50:resolution=0", "resolution=.0.: expected a positive integer"),
        ("timm:resnet50:resolution=2,resolution=3", "given twice"),
        ("timm:", "names no model"),
        ("timm:halonet*", "is a pattern"),
    ],
)
def test_bad_options_are_user_errors(name, message):
    with pytest.raises(SpecError, match=message):
        parse_model(name)


def test_an_unknown_name_names_the_closest_and_how_to_list_them():
    with pytest.raises(UnknownNameError) as caught:
        parse_model("timm:halonet26")
    text = str(caught.value)
    assert "unknown timm model 'halonet26'; did you mean halonet26t" in text
    assert "`sasa-bench models 'timm:PATTERN'` lists the names" in text
    with pytest.raises(UnknownNameError, match="unknown torchvision model 'resnet5'"):
        parse_model("torchvision:resnet5")


def test_patterns_expand_as_timm_lists_them(capsys):
    halos = expand("timm:halonet*:resolution=256")
    assert halos == [f"timm:{n}:resolution=256" for n in timm.list_models("halonet*")]
    assert "timm:halonet26t:resolution=256" in halos and len(halos) >= 3
    assert expand("timm:resnet50") == ["timm:resnet50"]
    assert "torchvision:resnet50" in expand("torchvision:resnet*")
    args = build_parser("bench").parse_args(["bench", "x", "--resolution", "64"])
    names = expand_models(["timm:halonet2*", "resnet26", "timm:halonet26t"], args)
    assert names == ["timm:halonet26t:resolution=64", "resnet26:resolution=64"]
    with pytest.raises(UnknownNameError, match=r"no timm model matches 'nothing\*'"):
        expand("timm:nothing*")
    assert main(["models", "timm:halonet2*", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"model": "timm:halonet26t", "resolution": 256, "num_classes": 1000}]


def test_a_missing_library_is_one_line_with_its_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(SasaBenchError, match=r"timm models need timm: pip install torch==") as e:
        import_source("timm")
    assert str(e.value).endswith("then pip install 'sasa-bench[timm]'")
    assert main(["profile", "timm:resnet18"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'sasa-bench[timm]'" in err
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(SasaBenchError, match="torchvision is not installed: pip install torch=="):
        import_source("torchvision")


def test_torchvision_without_its_compiled_ops_still_imports_as_it_means_to():
    """PyPI's torchvision is a CUDA build: beside a CPU torch its compiled library cannot load,
    and torchvision then runs without it (every op says so when called)."""
    torchvision = import_torchvision()
    if torchvision.extension._has_ops():
        assert without_compiled_ops() is None
        return
    assert "runs without its compiled ops" in without_compiled_ops()
    with pytest.raises(RuntimeError, match="Couldn't load custom C\\+\\+ ops"):
        torchvision.ops.nms(torch.rand(3, 4), torch.rand(3), 0.5)


def test_train_refuses_a_third_party_model(capsys):
    assert main(["train", SMALL, "--data", "digits", "--epochs", "1", "--subset", "8"]) == 2
    assert "train and eval take sasa_bench's own models" in capsys.readouterr().err


def test_profile_cross_checks_the_counters_against_torch(capsys):
    assert main(["profile", SMALL, "--counters", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reference"] == "torch" and "analytic" not in out["counters"]
    totals = {name: counted["macs"] for name, counted in out["counters"].items()}
    assert set(totals) == {"torch", "fvcore", "ptflops-aten", "ptflops-pytorch"}
    assert len(set(totals.values())) == 1 and out["macs"] == totals["torch"] > 0
    assert sum(row["macs"] for row in out["layers"]) == out["macs"]  # each module's own MACs
    assert sum(row["params"] for row in out["layers"]) == out["params"] == 11_689_512
    assert all(row["differs"] == [] for row in out["layers"])
    assert main(["profile", SMALL, "--counters", "all", "--group", "stage"]) == 0
    table = capsys.readouterr().out
    assert "layer4" in table and "(+0.000 % vs torch; 0 row(s) differ" in table


def test_a_bench_record_carries_the_traced_cost_labelled_so():
    from sasa_bench.counters import model_cost_of
    from sasa_bench.measure.model import BenchConfig, measure

    config = BenchConfig(SMALL, batch_size=1, warmup=0, iters=2, max_time_s=0, instances=1)
    record = measure(config.validate())
    assert record.status == "ok", record.error
    assert record.config["resolution"] == 32 and record.config["conventions"] == {}
    cost = model_cost_of(config.spec)
    assert record.cost["macs"] == cost.macs > 0 and record.cost["params"] == 11_689_512
    assert record.cost["counted"].startswith("traced")


def test_a_study_can_name_a_timm_model(tmp_path):
    from sasa_bench.report.render import comparison_table, entries_of
    from sasa_bench.report.store import RecordStore
    from sasa_bench.report.study import Study

    study = Study(name="tp", title="third party", models=(SMALL, "resnet26:resolution=32"))
    entry, ours = entries_of(study, RecordStore(tmp_path / "records.jsonl", []), "cpu")
    model = parse_thirdparty(SMALL).build().eval()
    assert entry.cost.macs == run_counter("torch", model, torch.randn(1, 3, 32, 32)).macs > 0
    assert entry.paper is None and ours.cost.macs > entry.cost.macs
    table = comparison_table(study, [entry, ours], "cpu")
    assert "timm:resnet18:resolution=32: no analytic count, traced" in table.caption

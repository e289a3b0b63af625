"""Every bad input of every verb is one clear line and exit code 2, before any work starts;
never a traceback. One case a line: (argv, exit code, a fragment of the message).

`{name}` in an argument is a file or folder of the `files` fixture (random bytes, foreign
records, a garbage checkpoint, a run folder, baselines with a section deleted, ...).
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from sasa_bench.cli import main
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import build_model
from sasa_bench.records import Record, append_record
from sasa_bench.train.checkpoint import save_checkpoint

COMMITTED = Path(__file__).resolve().parent.parent / ".ci" / "baseline-cpu.json"
TINY = "resnet26:num_classes=10,resolution=32,width=0.0625"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
READ_ONLY = pytest.mark.skipif(
    not Path("/proc/self").is_dir() or os.access("/proc/self", os.W_OK),
    reason="no folder here that even root cannot write to",
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    tmp_path = tmp_path_factory.mktemp("bad-inputs")
    paths = {"tmp": tmp_path}
    paths["random"] = tmp_path / "random.jsonl"
    paths["random"].write_bytes(bytes(range(128, 256)) * 8 + os.urandom(256))
    paths["text"] = tmp_path / "notes.jsonl"
    paths["text"].write_text("not json\nneither\n")
    paths["empty"] = tmp_path / "empty.jsonl"
    paths["empty"].write_text("")
    paths["foreign"] = tmp_path / "foreign.jsonl"
    paths["foreign"].write_text('{"event": "click", "user": 7}\n')
    paths["otherversion"] = tmp_path / "other.jsonl"
    paths["otherversion"].write_text(
        "\n" + json.dumps({"kind": "bench", "model": "sasa26", "schema_version": 99}) + "\n"
    )
    paths["bench"] = tmp_path / "bench.jsonl"
    record = Record("bench", "resnet26", config={"mode": "infer", "batch_size": 1})
    record.metrics = {"images_per_s": 10.0, "batch_size": 1, "oom_batch_sizes": []}
    append_record(paths["bench"], record)
    paths["garbage"] = tmp_path / "garbage.pt"
    paths["garbage"].write_bytes(os.urandom(512))
    paths["garbagerun"] = tmp_path / "garbagerun"
    paths["garbagerun"].mkdir()
    shutil.copy(paths["garbage"], paths["garbagerun"] / "checkpoint.pt")
    paths["emptyrun"] = tmp_path / "emptyrun"
    paths["emptyrun"].mkdir()
    paths["run"] = tmp_path / "run"  # a run folder: a checkpoint of TINY on digits
    save_checkpoint(
        paths["run"] / "checkpoint.pt",
        {
            "model_name": TINY,
            "classes": [str(i) for i in range(10)],
            "model": build_model(parse_model(TINY).spec).state_dict(),
            "epoch": 1,
        },
    )
    committed = json.loads(COMMITTED.read_text())
    for section in ("costs", "speed", "settings"):
        cut = {key: value for key, value in committed.items() if key != section}
        paths[f"no{section}"] = tmp_path / f"no-{section}.json"
        paths[f"no{section}"].write_text(json.dumps(cut))
    paths["nullcosts"] = tmp_path / "null-costs.json"
    paths["nullcosts"].write_text(json.dumps({**committed, "costs": None}))
    paths["baseline"] = COMMITTED
    paths["missing"] = tmp_path / "missing.jsonl"
    return {name: str(path) for name, path in paths.items()}


# fmt: off
CASES = [
    # -- sasa-bench (no verb) --------------------------------------------------------------
    ([], 2, "required: command"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    # -- models ----------------------------------------------------------------------------
    (["models", "sasa26"], 2, "unrecognized arguments: sasa26"),
    (["models", "--jsn"], 2, "unrecognized arguments: --jsn"),
    # -- profile: the model grammar --------------------------------------------------------
    (["profile", "sasa26:k=7,k=9"], 2, "model option 'k' given twice"),
    (["profile", "sasa26:k=7,kernel_size=9"], 2, "'kernel_size' repeats 'k'"),
    (["profile", "sasa26:width=inf"], 2, "option width='inf': expected a finite number"),
    (["profile", "sasa26:width=nan"], 2, "option width='nan': expected a finite number"),
    (["profile", "sasa26:width=1e999"], 2, "expected a finite number"),
    (["profile", "sasa26:resolution=1e999"], 2, "option resolution='1e999': expected int"),
    (["profile", "sasa26:resolution=0"], 2, "resolution must be a positive integer"),
    (["profile", "sasa26:k="], 2, "model option 'k' has no value"),
    (["profile", "sasa26:pos="], 2, "model option 'pos' has no value"),
    (["profile", "sasa26:k"], 2, "is not KEY=VALUE"),
    (["profile", "sasa26:colour=red"], 2, "unknown model option 'colour'"),
    (["profile", "sasa5"], 2, "unknown model 'sasa5'"),
    (["profile", "sasa26-full:resolution=66"], 2, "multiple of 4"),
    (["profile", "sasa26:heads=7"], 0, "channels rounded to multiples of 14 (2 x heads=7"),
    # -- profile: flags --------------------------------------------------------------------
    (["profile", "sasa26", "--width", "inf"], 2, "--width: expected a finite number, got 'inf'"),
    (["profile", "sasa26", "--k", "4"], 2, "k must be a positive odd integer"),
    (["profile", "sasa26", "--counters", "bogus"], 2, "unknown counter 'bogus'"),
    (["profile", "sasa26", "--group", "bogus"], 2, "argument --group: invalid choice"),
    (["profile", "sasa26", "--batch-size", "0"], 2, "argument --batch-size: must be >= 1"),
    (["profile", "sasa26", "--device", "tpu"], 2, "argument --device: unknown device 'tpu'"),
    (["profile", "sasa26", "--attn-impl", "magic"], 2, "argument --attn-impl: invalid choice"),
    # -- bench -----------------------------------------------------------------------------
    (["bench", "resnet26", "--batch-sizes", "0"], 2, "argument --batch-sizes: each value"),
    (["bench", "resnet26", "--batch-size", "0"], 2, "argument --batch-size: each value"),
    (["bench", "resnet26", "--batch-sizes", "1,x"], 2, "argument --batch-sizes: expected"),
    (["bench", "resnet26", "--iters", "0"], 2, "argument --iters: must be >= 1, got 0"),
    (["bench", "resnet26", "--warmup", "-1"], 2, "argument --warmup: must be >= 0"),
    (["bench", "resnet26", "--threads", "0"], 2, "--threads: must be >= 1"),
    (["bench", "resnet26", "--threads", "many"], 2, "expected a thread count or auto"),
    (["bench", "resnet26", "--instances", "0"], 2, "argument --instances: must be >= 1"),
    (["bench", "resnet26", "--max-time", "nan"], 2, "argument --max-time: expected a finite"),
    (["bench", "resnet26", "--timeout", "0"], 2, "argument --timeout: must be > 0"),
    (["bench", "resnet26", "--mode", "fly"], 2, "argument --mode: unknown mode 'fly'"),
    (["bench", "resnet26", "--attn-impl", "magic"], 2, "unknown attention implementation"),
    (["bench", "resnet26", "--dtype", "fp8"], 2, "argument --dtype: invalid choice"),
    (["bench", "resnet26", "--amp"], 2, "--amp needs --dtype bf16 or fp16"),
    (["bench", "resnet26", "--devices", "0"], 2, "--devices spreads a sweep over GPUs"),
    (["bench", "resnet26", "--devices", "-1"], 2, "argument --devices: each value must be >="),
    (["bench", "vgg*"], 2, "no model matches 'vgg*'"),
    (["bench", "resnet26", "nosuchnet"], 2, "unknown model 'nosuchnet'"),
    (["bench", "resnet26:k=3,k=5"], 2, "model option 'k' given twice"),
    pytest.param(["bench", "resnet26", "--device", "cuda"], 2, "error: no GPU: torch",
                 marks=NO_GPU),
    # -- compare ---------------------------------------------------------------------------
    (["compare", "{random}"], 2, "random.jsonl is not a sasa_bench results file (binary"),
    (["compare", "{foreign}"], 2, "foreign.jsonl line 1: not a sasa_bench record"),
    (["compare", "{otherversion}"], 2, "other.jsonl line 2: record schema_version 99 is not 1"),
    (["compare", "{text}"], 2, "notes.jsonl is not a sasa_bench results file"),
    (["compare", "{missing}"], 2, "no results file"),
    (["compare", "{tmp}"], 2, "a folder, not a results file"),
    (["compare", "{empty}"], 2, "no bench records in these files"),
    (["compare", "{bench}", "--by", "colour"], 2, "cannot compare by 'colour'"),
    (["compare", "{bench}", "--metric", "speed"], 2, "no record has the metric 'speed'"),
    (["compare", "{bench}", "--baseline", "nope"], 2, "baseline 'nope' is not a column"),
    (["compare", "{bench}", "--format", "xml"], 2, "argument --format: invalid choice"),
    (["compare", "{bench}", "--metric", "oom_batch_sizes"], 2, "is not a number"),
    # -- kernels ---------------------------------------------------------------------------
    (["kernels", "--list", "--check", "--bench"], 2, "argument --check: not allowed with"),
    (["kernels", "--check", "--sass"], 2, "argument --sass: not allowed with argument --check"),
    (["kernels", "--check", "--impl", "nope"], 2, "argument --impl: unknown backend 'nope'"),
    (["kernels", "--check", "--dtype", "fp8"], 2, "argument --dtype: unknown dtype 'fp8'"),
    (["kernels", "--bench", "--batch", "0"], 2, "argument --batch: must be >= 1, got 0"),
    (["kernels", "--bench", "--iters", "0"], 2, "argument --iters: must be >= 1, got 0"),
    (["kernels", "--bench", "--warmup", "-1"], 2, "argument --warmup: must be >= 0"),
    (["kernels", "--bench", "--device", "tpu"], 2, "argument --device: unknown device"),
    (["kernels", "--bench", "--shapes", "huge"], 2, "argument --shapes: invalid choice"),
    (["kernels", "--sass", "--head-dims", "8,x"], 2, "argument --head-dims: expected integers"),
    (["kernels", "--sass", "--head-dims", "0"], 2, "argument --head-dims: each value must be"),
    (["kernels", "--sass", "--dtype", "fp32,bf16"], 2, "--sass takes one --dtype"),
    pytest.param(["kernels", "--check", "--device", "cuda"], 2, "no GPU", marks=NO_GPU),
    # -- train -----------------------------------------------------------------------------
    (["train", "resnet26", "--data", "bogus"], 2, "unknown data 'bogus'"),
    pytest.param(["train", "resnet26", "--device", "cuda", "--out", "{tmp}/run"], 2,
                 "error: no GPU: torch", marks=NO_GPU),
    (["train", "resnet26", "--data", "cifar10"], 2, "write it as cifar10:PATH"),
    (["train", "resnet26", "--data", "cifar10:{missing}"], 2, "no such file or folder"),
    (["train", "resnet26", "--data", "imagefolder:{bench}"], 2, "is not a folder"),
    (["train", "resnet26", "--epochs", "0"], 2, "argument --epochs: must be >= 1, got 0"),
    (["train", "resnet26", "--batch-size", "0"], 2, "argument --batch-size: must be >= 1"),
    (["train", "resnet26", "--lr", "inf"], 2, "argument --lr: expected a finite number"),
    (["train", "resnet26", "--lr", "0"], 2, "argument --lr: must be > 0"),
    (["train", "resnet26", "--momentum", "1"], 2, "argument --momentum: must be < 1"),
    (["train", "resnet26", "--ema", "1"], 2, "argument --ema: must be < 1"),
    (["train", "resnet26", "--bn-momentum", "2"], 2, "argument --bn-momentum: must be <= 1"),
    (["train", "resnet26", "--label-smoothing", "nan"], 2, "argument --label-smoothing:"),
    (["train", "resnet26", "--workers", "-1"], 2, "argument --workers: must be >= 0"),
    (["train", "resnet26", "--seed", "-1"], 2, "argument --seed: must be >= 0"),
    (["train", "resnet26", "--seeds", "0,0"], 2, "seed 0 is given twice"),
    (["train", "resnet26", "--threads", "0"], 2, "--threads: must be >= 1"),
    (["train", "resnet26", "--recipe", "huge"], 2, "argument --recipe: invalid choice"),
    (["train", "resnet26", "--epochs", "3", "--warmup-epochs", "5"], 2, "below --epochs (3)"),
    (["train", "resnet26", "--optimizer", "sgd-nesterov", "--momentum", "0"], 2,
     "--optimizer sgd-nesterov needs --momentum > 0"),
    (["train", "resnet26", "--subset", "0"], 2, "--subset: must be >= 1, got 0"),
    (["train", "resnet26:k=7,kernel_size=9"], 2, "'kernel_size' repeats 'k'"),
    (["train", "resnet26", "--resume", "--out", "{emptyrun}"], 2, "--resume: no checkpoint in"),
    # -- eval ------------------------------------------------------------------------------
    (["eval", "resnet26"], 2, "the following arguments are required: --checkpoint"),
    (["eval", "resnet26", "--checkpoint", "{garbage}"], 2,
     "garbage.pt is not a sasa_bench checkpoint"),
    (["eval", "resnet26", "--checkpoint", "{garbagerun}"], 2,
     "checkpoint.pt is not a sasa_bench checkpoint"),
    (["eval", "resnet38", "--checkpoint", "{run}"], 2, "holds resnet26"),  # the folder's file
    (["eval", "resnet26", "--checkpoint", "{emptyrun}"], 2, "holds no checkpoint.pt"),
    (["eval", "resnet26", "--checkpoint", "{missing}"], 2, "no checkpoint"),
    (["eval", "resnet26", "--checkpoint", "{run}", "--batch-size", "0"], 2,
     "argument --batch-size: must be >= 1"),
    (["eval", "resnet26", "--checkpoint", "{run}", "--weights", "best"], 2,
     "argument --weights: invalid choice"),
    (["eval", "resnet26", "--checkpoint", "{run}", "--data", "bogus"], 2, "unknown data"),
    (["eval", TINY, "--checkpoint", "{run}", "--weights", "ema"], 2, "no EMA weights"),
    (["eval", TINY, "--checkpoint", "{run}", "--subset", "0"], 2, "--subset: must be >= 1"),
    (["eval", TINY, "--checkpoint", "{run}", "--subset=-3"], 2, "--subset: must be >= 1"),
    (["eval", TINY, "--checkpoint", "{run}", "--device", "tpu"], 2, "unknown device 'tpu'"),
    (["eval", "resnet26:k=7,k=9", "--checkpoint", "{run}"], 2, "'k' given twice"),
    (["eval", TINY, "--checkpoint", "{run}", "--attn-impl", "magic"], 2, "argument --attn-impl"),
    pytest.param(["eval", TINY, "--checkpoint", "{run}", "--device", "cuda"], 2,
                 "--device: no GPU: torch", marks=NO_GPU),
    # -- check -----------------------------------------------------------------------------
    (["check", "--baseline", "{nocosts}"], 2, 'missing section(s) "costs"'),
    (["check", "--baseline", "{nospeed}"], 2, 'missing section(s) "speed"'),
    (["check", "--baseline", "{nosettings}"], 2, 'missing section(s) "settings"'),
    (["check", "--baseline", "{nullcosts}"], 2, '"costs" must map model names to objects'),
    (["check", "--baseline", "{random}"], 2, "is not a text file"),
    (["check", "--baseline", "{missing}"], 2, "no baseline file"),
    (["check"], 2, "the following arguments are required: --baseline"),
    (["check", "--baseline", "{baseline}", "--tolerance", "nan"], 2, "not a tolerance"),
    (["check", "--baseline", "{baseline}", "--tolerance=-5%"], 2, "tolerance must be >= 0"),
    (["check", "--baseline", "{baseline}", "--results", "{random}"], 2, "not UTF-8"),
    (["check", "--baseline", "{baseline}", "--results", "{missing}"], 2, "no results file"),
    (["check", "--baseline", "{baseline}", "--markdown", "{missing}/x.md"], 2, "no folder"),
    (["check", "--baseline", "{missing}", "--device", "tpu"], 2, "unknown device 'tpu'"),
    pytest.param(["check", "--baseline", "{missing}", "--device", "cuda"], 2,
                 "error: no GPU: torch", marks=NO_GPU),
    pytest.param(["check", "--baseline", "{baseline}", "--device", "cuda:1"], 2,
                 "error: no GPU: torch", marks=NO_GPU),
    # -- report ----------------------------------------------------------------------------
    (["report", "--results", "{random}", "--out", "{tmp}/r"], 2, "not UTF-8"),
    (["report", "--results", "{foreign}", "--out", "{tmp}/r"], 2, "foreign.jsonl line 1"),
    (["report", "--results", "{missing}", "--out", "{tmp}/r"], 2, "no results file"),
    (["report", "table99", "--smoke", "--out", "{tmp}/r"], 2, "unknown study 'table99'"),
    (["report", "table99", "--out", "{tmp}/r"], 2, "unknown study 'table99'"),
    (["report", "--device", "tpu", "--out", "{tmp}/r"], 2, "unknown device 'tpu'"),
    # -- output paths: refused when parsed, not after the work -----------------------------
    (["bench", "resnet26", "--out", "{tmp}"], 2, "--out: '{tmp}' is a folder; name a file"),
    (["bench", "resnet26", "--out", "{bench}/r.jsonl"], 2, "is a file, not a folder"),
    pytest.param(["bench", "resnet26", "--out", "/proc/self/r.jsonl"], 2, "is not writable",
                 marks=READ_ONLY),
    (["train", "resnet26", "--out", "{bench}"], 2, "--out: '{bench}' is a file; a folder is"),
    (["train", "resnet26", "--results", "{tmp}"], 2, "--results: '{tmp}' is a folder"),
    (["eval", TINY, "--checkpoint", "{run}", "--results", "{tmp}"], 2, "is a folder"),
    (["report", "--out", "{bench}"], 2, "--out: '{bench}' is a file; a folder is needed"),
    pytest.param(["report", "--out", "/proc/self/report"], 2, "is not writable",
                 marks=READ_ONLY),
    (["check", "--baseline", "{tmp}", "--update-baseline"], 2,
     "--baseline (with --update-baseline): '{tmp}' is a folder"),
    (["check", "--baseline", "{baseline}", "--markdown", "{tmp}"], 2, "--markdown: '{tmp}' is"),
    pytest.param(["report", "--device", "cuda", "--out", "{tmp}/r"], 2, "no GPU", marks=NO_GPU),
]
# fmt: on


def _id(case) -> str:
    argv = case.values[0] if hasattr(case, "values") else case[0]
    return " ".join(argv).replace(TINY, "TINY")[:60] or "(none)"


@pytest.mark.parametrize("argv, code, fragment", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_one_line(files, capsys, argv, code, fragment):
    argv = [arg.format(**files) for arg in argv]
    fragment = fragment.format(**files)
    try:
        got = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        got = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert fragment in (err if code else out), err or out
    assert got == code, err
    if code:
        assert len(err.strip().splitlines()) == 1, err


def test_a_backend_whose_library_is_missing_is_refused_with_its_install_line(monkeypatch):
    from sasa_bench.errors import SasaBenchError
    from sasa_bench.kernels import BACKENDS, Backend, usable_backend
    from sasa_bench.models.resnet import set_attention_impl

    fake = Backend("fake", "sasa_bench.kernels.reference", exact=True, description="",
                   requires="no_such_library_here", extra="kernels")  # fmt: skip
    monkeypatch.setitem(BACKENDS, "fake", fake)
    hint = "no_such_library_here is not installed (pip install 'sasa-bench[kernels]')"
    with pytest.raises(SasaBenchError, match=re.escape(hint)):
        usable_backend("fake")
    with pytest.raises(SasaBenchError, match="attention implementation 'fake'"):
        set_attention_impl(build_model(parse_model("sasa26:width=0.25").spec), "fake")
    with pytest.raises(SasaBenchError, match=re.escape(hint)):
        fake.load()


def test_the_torchvision_advice_keeps_the_installed_torch():
    from sasa_bench.models.thirdparty import torchvision_install

    line = torchvision_install()
    version = torch.__version__.split("+")[0]
    assert line.startswith(f"pip install torch=={version} ")
    if torch.version.cuda is None:
        assert line.endswith("--index-url https://download.pytorch.org/whl/cpu")

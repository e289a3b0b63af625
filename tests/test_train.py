"""Training harness: recipes, schedule, checkpoints, exact resume after a kill, train -> eval."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from sasa_bench.cli import main
from sasa_bench.errors import SasaBenchError
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.records import load_records
from sasa_bench.train import checkpoint as ckpt
from sasa_bench.train import make_config, open_dataset, train
from sasa_bench.train.optim import lr_factor

# Tiny but real: the SASA layer in the last group, 4 steps per epoch, EMA, warm-up, smoothing,
# SGD with momentum (its buffers must survive the resume too).
TINY = dict(
    model="sasa26:num_classes=10,resolution=32,stages=ccca,width=0.0625",
    data="digits",
    epochs=2,
    batch_size=32,
    subset=128,
    optimizer="sgd-nesterov",
    lr=0.05,
    warmup_epochs=0.5,
    label_smoothing=0.1,
    ema=0.9,
    device="cpu",
)
KILL_AFTER_CHECKPOINT = """
import json, os, signal, sys
from sasa_bench.train import make_config, open_dataset, train

config = make_config(**json.loads(sys.argv[1]))

def kill(epoch, step):  # mid-epoch 2, after epoch 1's checkpoint
    if epoch == 1 and step == 2:
        os.kill(os.getpid(), signal.SIGKILL)

train(config, open_dataset(config.data), out=sys.argv[2], on_step=kill, echo=lambda _: None)
"""


def quiet(_):
    pass


def test_recipes_scale_lr_with_batch_and_flags_override():
    paper = make_config(model="sasa50", data="digits", recipe="paper", batch_size=256)
    assert paper.lr == pytest.approx(1.6 * 256 / 4096)
    assert (paper.epochs, paper.warmup_epochs, paper.ema, paper.bn_momentum) == (
        130,
        10,
        0.9999,
        1e-4,
    )
    assert paper.optimizer == "sgd-nesterov" and paper.schedule == "cosine"
    assert make_config(model="m", data="d", recipe="paper", lr=0.3, ema=0).lr == 0.3
    assert make_config(model="m", data="d", recipe="paper", ema=0).ema is None
    with pytest.raises(SasaBenchError, match="--warmup-epochs must be >= 0 and below --epochs"):
        make_config(model="m", data="d", epochs=2, warmup_epochs=2)
    with pytest.raises(SasaBenchError, match="unknown recipe"):
        make_config(model="m", data="d", recipe="fast")


def test_warmup_then_cosine():
    f = [lr_factor(s, total_steps=10, warmup_steps=2, schedule="cosine") for s in range(10)]
    assert f[:3] == [0.5, 1.0, 1.0] and f[2] > f[5] > f[9] > 0
    assert lr_factor(6, total_steps=10, warmup_steps=2, schedule="cosine") == pytest.approx(0.5)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    def torn_save(obj, handle):  # a crash half-way through writing
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = ckpt.load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    path.write_bytes(path.read_bytes()[:100])  # torn by something else
    with pytest.raises(ckpt.CheckpointError, match="not a sasa_bench checkpoint .torch cannot"):
        ckpt.load_checkpoint(path)
    torch.save({"a": 1}, path)
    with pytest.raises(ckpt.CheckpointError, match="not a sasa_bench checkpoint"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trips():
    import random

    import numpy as np

    state = ckpt.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1))
    ckpt.set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1)) == first


def test_resume_after_a_kill_mid_epoch_gives_identical_weights(tmp_path):
    config = make_config(**TINY)
    data = open_dataset("digits")
    whole = train(config, data, out=tmp_path / "whole", echo=quiet)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_CHECKPOINT, json.dumps(TINY), str(tmp_path / "cut")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert ckpt.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1
    resumed = train(config, data, out=tmp_path / "cut", resume=True, echo=quiet)
    a = ckpt.load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = ckpt.load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    for part in ("model", "ema"):
        assert a[part].keys() == b[part].keys()
        for name in a[part]:
            assert torch.equal(a[part][name], b[part][name]), f"{part}.{name}"
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert all(
        torch.equal(a["optimizer"]["state"][k]["momentum_buffer"], v["momentum_buffer"])
        for k, v in b["optimizer"]["state"].items()
    )
    assert resumed.metrics["rank_digests"] == whole.metrics["rank_digests"]
    assert resumed.metrics["top1"] == whole.metrics["top1"]
    epochs = [r.metrics["epoch"] for r in load_records(tmp_path / "cut" / "epochs.jsonl")]
    assert epochs == [1, 2]


def test_train_then_eval_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["resnet26", "--width", "0.0625", "--subset", "128"]
    train_args = ["--epochs", "1", "--batch-size", "32", "--out", str(out), "--json"]
    assert main(["train", *args, *train_args]) == 0
    printed = capsys.readouterr().out
    record = load_records(out / "results.jsonl")[-1]
    assert json.loads(printed[printed.index("{") :])["metrics"] == record.metrics
    name = "resnet26:num_classes=10,resolution=32,width=0.0625"
    assert (record.kind, record.model, record.status) == ("train", name, "ok")
    assert record.cost["params"] == model_cost(parse_model(name).spec).params
    assert record.metrics["epochs"] == 1 and record.metrics["ranks_agree"]
    assert {"top1", "top5", "loss", "wall_time_s", "train_images_per_s"} <= set(record.metrics)
    assert record.env["torch"] == torch.__version__
    code = main(["eval", *args, "--checkpoint", str(out / "checkpoint.pt"),
                 "--results", str(out / "results.jsonl")])  # fmt: skip
    assert code == 0 and "top-1" in capsys.readouterr().out
    evaluated = load_records(out / "results.jsonl")[-1]
    assert evaluated.kind == "eval" and evaluated.model == name
    assert evaluated.metrics["top1"] == pytest.approx(record.metrics["top1"])
    assert evaluated.metrics["images"] == 128


def test_run_folder_guards(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "resnet26", "--width", "0.0625", "--epochs", "1", "--subset", "64",
            "--out", str(out)]  # fmt: skip
    assert main([*base, "--resume"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(base) == 0
    assert main(base) == 2
    assert "--resume continues it" in capsys.readouterr().err
    assert main([*base, "--resume", "--lr", "0.3"]) == 2
    assert "lr: 0.008 -> 0.3" in capsys.readouterr().err
    assert main([*base, "--resume"]) == 0
    assert "already trained for 1 epochs" in capsys.readouterr().out
    assert len(load_records(out / "results.jsonl")) == 1


def test_eval_refuses_another_model_or_data(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["resnet26", "--width", "0.0625", "--subset", "64"]
    assert main(["train", *base, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", "resnet38", "--checkpoint", str(out / "checkpoint.pt")]) == 2
    assert "holds resnet26" in capsys.readouterr().err
    missing = ["eval", *base, "--checkpoint", str(tmp_path / "none.pt")]
    assert main(missing) == 2 and "no checkpoint" in capsys.readouterr().err
    ema = ["eval", *base, "--checkpoint", str(out / "checkpoint.pt"), "--weights", "ema"]
    assert main(ema) == 2 and "no EMA weights" in capsys.readouterr().err
    # weights under other names (as SASA checkpoints from before the fused qkv projection)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    name = next(iter(state["model"]))
    state["model"]["old." + name] = state["model"].pop(name)
    torch.save(state, tmp_path / "renamed.pt")
    renamed = ["eval", *base, "--checkpoint", str(tmp_path / "renamed.pt")]
    assert main(renamed) == 2
    err = capsys.readouterr().err
    assert "holds weights this model cannot take" in err and f"missing ['{name}']" in err


def test_diverging_loss_is_a_failed_record(tmp_path):
    config = make_config(**{**TINY, "model": "resnet26:num_classes=10,resolution=32,width=0.0625",
                            "epochs": 1, "lr": 1e30, "warmup_epochs": 0, "ema": 0})  # fmt: skip
    with pytest.raises(SasaBenchError, match="training loss became"):
        train(config, open_dataset("digits"), out=tmp_path, echo=quiet)
    (failed,) = load_records(tmp_path / "results.jsonl")
    assert failed.status == "failed" and "lower --lr" in failed.error
    assert not (tmp_path / "checkpoint.pt").exists()


def test_torchrun_two_processes_agree_on_the_weights(tmp_path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "sasa_bench", "train", "resnet26", "--width", "0.0625", "--epochs", "1",
        "--subset", "128", "--batch-size", "32", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (record,) = load_records(out / "results.jsonl")
    assert record.config["world_size"] == 2 and record.metrics["ranks_agree"]
    digests = record.metrics["rank_digests"]
    assert len(digests) == 2
    from sasa_bench.models.resnet import build_model
    from sasa_bench.train.distributed import weights_digest

    model = build_model(parse_model(record.model).spec)
    model.load_state_dict(ckpt.load_checkpoint(out / "checkpoint.pt")["model"])
    assert weights_digest(model) == digests[0]
    assert done.stdout.count("epoch 1/1") == 1  # rank 0 logs alone

"""Accuracy over seeds: mean, sample sd and n from the records, in `train --seeds`."""

import statistics

import pytest

from sasa_bench.cli import main
from sasa_bench.records import Record, load_records
from sasa_bench.train.seeds import parse_seeds, summarize


def run(model="m", seed=0, top1=50.0, created="2026-01-01", **config):
    base = {"data": "digits", "epochs": 3, "recipe": "small", "seed": seed}
    return Record("train", model, config=base | config, metrics={"top1": top1}, created=created)


def test_seed_lists_parse_and_bad_ones_say_why():
    assert parse_seeds("0,1, 2") == (0, 1, 2)
    cases = (("0,x", "integers"), ("1,1", "twice"), ("-1", "integers"), ("", "integers"))
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            parse_seeds(bad)


def test_summary_groups_by_experiment_and_keeps_the_latest_run_of_each_seed():
    records = [
        run(seed=0, top1=90.0),
        run(seed=1, top1=94.0),
        run(seed=2, top1=80.0, created="2026-01-01"),
        run(seed=2, top1=95.0, created="2026-01-02"),  # a rerun of seed 2: this one counts
        run(seed=0, top1=10.0, epochs=1),  # another experiment
        run(model="other", seed=0, top1=70.0),
        Record("train", "m", status="failed", config={"seed": 3}),
    ]
    first, short, other = summarize(records)
    assert (first.seeds, first.top1) == ((0, 1, 2), (90.0, 94.0, 95.0))
    assert first.mean == pytest.approx(93.0)
    assert first.sd == pytest.approx(statistics.stdev([90.0, 94.0, 95.0]))
    assert first.text() == f"93.0 ± {statistics.stdev([90, 94, 95]):.1f} (n=3)"
    assert (short.epochs, short.n, short.sd) == (1, 1, None)
    assert short.text() == "10.0 (n=1, one seed)"
    assert other.model == "other"


def test_train_with_seeds_runs_each_and_prints_mean_and_sd(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "resnet26", "--width", "0.0625", "--subset", "64", "--epochs", "1",
            "--seeds", "0,1", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    runs = [load_records(out / f"seed-{seed}" / "results.jsonl")[-1] for seed in (0, 1)]
    assert [r.config["seed"] for r in runs] == [0, 1]
    assert all(r.config["conventions"] == {"zero_init_last": True} for r in runs)
    top1 = [r.metrics["top1"] for r in runs]
    summary = f"{statistics.fmean(top1):.2f} ± {statistics.stdev(top1):.2f} (n=2) %"
    assert f"test top-1 {summary}, mean ± sd over seeds 0, 1" in printed


def test_seed_and_seeds_together_are_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "resnet26", "--seed", "1", "--seeds", "0,1"])
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_compare_shows_accuracy_as_mean_sd_and_n_over_seeds(tmp_path, capsys):
    from sasa_bench.records import append_record

    files = {"a.jsonl": (90.0, 94.0, 95.0), "b.jsonl": (80.0,)}
    for name, values in files.items():
        for seed, top1 in enumerate(values):
            append_record(tmp_path / name, run(seed=seed, top1=top1))
        append_record(tmp_path / name, Record("bench", "m", metrics={"images_per_s": 1.0}))
    paths = [str(tmp_path / name) for name in files]
    assert main(["compare", *paths, "--metric", "top1", "--format", "markdown"]) == 0
    table = capsys.readouterr().out
    sd = statistics.stdev([90, 94, 95])
    assert f"| 93 ± {sd:.2g} (n=3) | 80 ± - (n=1) | {80 / 93:.3g}x |" in table

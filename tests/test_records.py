import json

import pytest

from sasa_bench.errors import SasaBenchError
from sasa_bench.records import SCHEMA_VERSION, Record, append_record, environment, load_records


def test_record_round_trips_through_a_file(tmp_path):
    path = tmp_path / "r.jsonl"
    first = Record("bench", "sasa26", config={"batch_size": 2}, metrics={"images_per_s": 3.5})
    second = Record("train", "resnet26", status="failed", error="boom", env=environment("cpu"))
    append_record(path, first)
    append_record(path, second)
    assert load_records(path) == [first, second]
    assert json.loads(path.read_text().splitlines()[0])["schema_version"] == SCHEMA_VERSION


def test_torn_line_is_skipped_and_does_not_swallow_the_next_record(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    append_record(path, Record("bench", "resnet26"))
    with path.open("a") as handle:
        handle.write('{"kind": "bench", "mod')  # a crash mid-write
    append_record(path, Record("bench", "sasa26"))
    assert [r.model for r in load_records(path)] == ["resnet26", "sasa26"]
    assert "skipped 1 torn line" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("hello\nworld\n")
    with pytest.raises(SasaBenchError, match="not a sasa_bench results file"):
        load_records(bad)


def test_other_schema_version_and_missing_file_are_clear_errors(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"kind": "bench", "model": "x", "schema_version": 99}) + "\n")
    with pytest.raises(SasaBenchError, match="schema_version 99"):
        load_records(path)
    with pytest.raises(SasaBenchError, match="no results file"):
        load_records(tmp_path / "missing.jsonl")


def test_environment_names_the_software_and_machine():
    env = environment("cpu")
    assert env["torch"] and env["python"] and env["cpu_count"] >= 1
    assert env["gpu_count"] == 0 or env["gpu"]

"""report.counts: every traced counter's MACs of a model as a record, and its table."""

from sasa_bench.counters import COUNTERS
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost
from sasa_bench.report.build import plan_work
from sasa_bench.report.counts import counts_config, counts_record, spread
from sasa_bench.report.render import counts_table
from sasa_bench.report.store import RecordStore
from sasa_bench.report.study import Study

MODEL = "sasa26:resolution=32,width=0.25"


def test_every_counter_counts_the_analytic_macs_of_a_sasa_net():
    record = counts_record(MODEL)
    assert record.status == "ok" and record.kind == "counts"
    analytic = model_cost(parse_model(MODEL).spec).macs
    assert record.metrics["macs"] == {name: analytic for name in COUNTERS}
    assert record.cost["macs"] == analytic and "counted" not in record.cost
    assert spread(record) == 0.0 and record.metrics["resolution"] == 32


def test_a_model_that_cannot_be_built_is_a_failed_counts_record():
    record = counts_record("resnet26:width=0")
    assert record.status == "failed" and record.error


def test_a_study_with_counters_plans_each_count_once_and_tabulates_it(tmp_path):
    study = Study(name="c", title="C", models=(MODEL, "resnet26:resolution=32"), counters=True)
    store = RecordStore(tmp_path / "records.jsonl", [])
    work = plan_work([study, study], store, "cpu")
    assert work == [("counts", MODEL), ("counts", "resnet26:resolution=32")]
    store.add(counts_record(MODEL))
    assert plan_work([study], store, "cpu") == [("counts", "resnet26:resolution=32")]
    table = counts_table(study, store)
    counted, missing = table.rows
    assert counted[0] == counts_config(MODEL)["model"] and counted[-2] == "0.00"
    assert missing[3] == "not counted"

"""The analytic count reproduces the paper's FLOPS and Params columns (Tables 1, 3-7)."""

import pytest

from sasa_bench import paper
from sasa_bench.models.registry import parse_model
from sasa_bench.models.resnet import model_cost

COST_TABLES = ("1", "3", "4", "5", "6", "7")
# Rows no paper-consistent count reproduces within 0.1 B, with the residual we get.
# The paper gives 'none' and 'absolute' 6.9 B, 0.1 B under 'relative' (7.0 B); dropping the
# q.r product (k^2 d MACs per pixel, as the reference states it must be counted to get 7.0 B
# and the k sweep of Table 4) removes 0.19 B, giving 6.78 B. Absolute embeddings are added to
# the keys and cost no MACs. See docs/counting.md.
KNOWN_FLOP_RESIDUALS = {
    "sasa50:pos=none": 0.13,
    "sasa50:pos=absolute": 0.13,
}


def cost_rows():
    return [row for table in COST_TABLES for row in paper.rows(table)]


def test_every_cost_table_has_rows():
    counts = {t: len(paper.rows(t)) for t in COST_TABLES}
    assert counts == {"1": 9, "3": 8, "4": 5, "5": 3, "6": 2, "7": 3}


@pytest.mark.parametrize("row", cost_rows(), ids=lambda r: f"T{r.table}-{r.model}")
def test_analytic_count_reproduces_paper(row):
    cost = model_cost(parse_model(row.model).spec)
    if row.params_m is not None:
        assert abs(cost.params / 1e6 - row.params_m) < 0.1, cost.params
    tolerance = KNOWN_FLOP_RESIDUALS.get(row.canonical_model, 0.1)
    assert abs(cost.flops / 1e9 - row.flops_b) < tolerance, cost.flops


@pytest.mark.parametrize("model", sorted(KNOWN_FLOP_RESIDUALS))
def test_known_residuals_are_still_residuals(model):
    """If a change brings these within 0.1 B, the exception list must shrink."""
    row = next(r for r in cost_rows() if r.canonical_model == model)
    flops_b = model_cost(parse_model(model).spec).flops / 1e9
    assert abs(flops_b - row.flops_b) >= 0.1


def test_resnet50_has_torchvision_parameter_count():
    assert model_cost(parse_model("resnet50").spec).params == 25_557_032
    assert model_cost(parse_model("resnet101").spec).params == 44_549_160


def test_resnet50_macs_match_the_paper_convention():
    # 4.09 GMACs = 8.2 B FLOPS in the paper: FLOPs are 2 x MACs.
    cost = model_cost(parse_model("resnet50").spec)
    assert cost.flops == 2 * cost.macs
    assert round(cost.macs / 1e9, 2) == 4.09


def test_every_paper_row_names_a_buildable_model():
    for row in paper.rows():
        parse_model(row.model)  # raises on a bad key
    detector_rows = paper.rows("2")
    assert len(detector_rows) == 5 and all("builds" in r.extra for r in detector_rows)


def test_the_row_of_a_model_in_one_table():
    row = paper.row_for("sasa50", "1")
    assert (row.table, row.flops_b, row.params_m) == ("1", 7.0, 18.0)
    assert paper.row_for("sasa50:k=7", "1") == row  # any spelling of the model
    assert paper.row_for("sasa50:k=9", "1") is None
    assert paper.row_for("sasa50:k=9", "4").table == "4"

"""The text formatters every table uses: exact strings for known values."""

from sasa_bench.format import (
    MISSING,
    binary_bytes,
    cell,
    count,
    fixed,
    human,
    shape,
    significant,
    to_csv,
    to_markdown,
)


def test_numbers_as_text():
    assert human(1_234_567) == "1.23 M" and human(3_263_744, "B") == "3.26 MB"
    assert human(999) == "999" and human(4.1e12, "FLOP/s") == "4.10 TFLOP/s"
    assert fixed(2.345, 1) == "2.3" and fixed(0.0) == "0.00"
    assert significant(19.445449, 4) == "19.45" and significant(0.01234, 3) == "0.0123"
    assert count(25_557_032) == "25,557,032"
    assert binary_bytes(3_263_744) == "3.11 MiB" and binary_bytes(512) == "512 B"
    assert binary_bytes(2**31) == "2.00 GiB" and binary_bytes(1536) == "1.50 KiB"
    assert shape((64, 56, 56)) == "64x56x56"
    assert cell(7) == "7" and cell("a") == "a"


def test_a_missing_value_is_the_same_mark_everywhere():
    assert MISSING == "-"
    for formatter in (cell, fixed, significant, count, binary_bytes):
        assert formatter(None) == MISSING


def test_tables_as_csv_and_markdown():
    assert to_csv(["a", "b"], [[1, "x,y"]]) == 'a,b\n1,"x,y"\n'
    assert to_markdown(["a", "b|c"], [[1, "two\nlines"]]) == (
        "| a | b\\|c |\n|---|---|\n| 1 | two lines |\n"
    )

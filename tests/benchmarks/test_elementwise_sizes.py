"""The elementwise benchmark (benchmarks/elementwise_sizes.py) at a small size: each function's
DFL program agrees with its NumPy reference in f64 and f32 (the check the benchmark makes
before timing), and the tables have a row per function, size and dtype."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import elementwise_sizes as ew  # noqa: E402


def test_every_function_is_checked_and_tabled_in_both_dtypes():
    rows = ew.run(ew.parse_args(["--quick", "--sizes", "100,1000"]))
    assert len(rows) == len(ew.FUNCTIONS) * 2 * 2
    assert all(r["diffc"] > 0 for r in rows)
    text = ew.tables(rows)
    assert "### f64" in text and "### f32" in text
    assert sum(line.startswith("| erf |") for line in text.splitlines()) == 4


def test_unknown_function_is_a_usage_error():
    with pytest.raises(SystemExit):
        ew.parse_args(["--only", "cosh"])


def test_pow_rows_are_checked_and_tabled():
    """--pow: each form's forward (against NumPy) and gradient (against JAX's, when importable)
    checked, then a row per form and size, forward and value-and-grad."""
    args = ew.parse_args(["--pow", "--quick", "--sizes", "100", "--dtype", "f32"])
    rows = ew.run_pow(args)
    assert [r["function"] for r in rows] == list(ew.POWERS)
    assert all(r["diffc"] > 0 and r["diffc_vg"] > 0 for r in rows)
    text = ew.pow_tables(rows)
    assert "### pow, f32" in text and sum(line.startswith("| x**y |") for line in text.splitlines()) == 1
    with pytest.raises(SystemExit):
        ew.parse_args(["--pow", "--only", "exp"])

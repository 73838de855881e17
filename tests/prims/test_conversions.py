"""Conversions at their edges give one answer whether LLVM folds them (constant operands) or
the CPU computes them (run-time arguments), and it is the documented one: i64() of NaN or of
a float outside the i64 range is INT64_MIN (as x86 and NumPy on x86), f32() of a huge f64 is
an infinity, bools become 0/1. See Note [Float to int] in diffc/prims/elementwise.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

import diffc
from diffc.prims.elementwise import convert_p
from diffc.typesys import DType

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
NAN, INF = math.nan, math.inf

# (DFL expression of the value, its Python value, its dtype)
EDGES = [
    ("0.0 / 0.0", NAN, "f64"),
    ("1.0 / 0.0", INF, "f64"),
    ("-1.0 / 0.0", -INF, "f64"),
    ("-0.0", -0.0, "f64"),
    ("1e300", 1e300, "f64"),
    ("-1e300", -1e300, "f64"),
    ("9223372036854775807.0", 2.0**63, "f64"),  # rounds to 2**63: out of range
    ("-9223372036854775808.0", -(2.0**63), "f64"),  # exactly INT64_MIN: in range
    ("9223372036854774784.0", 9223372036854774784.0, "f64"),  # the largest f64 below 2**63
    ("-2.5", -2.5, "f64"),
    ("2.9999", 2.9999, "f64"),
    ("3.4028235677973366e38", 3.4028235677973366e38, "f64"),  # just above f32's largest
    ("1e-50", 1e-50, "f64"),  # underflows in f32
    ("f32(0.0 / 0.0)", NAN, "f32"),
    ("f32(1e300)", INF, "f32"),
    ("f32(-2.5)", -2.5, "f32"),
    ("f32(1e20)", float(np.float32(1e20)), "f32"),  # beyond i64
    ("f32(0.1)", float(np.float32(0.1)), "f32"),
    ("-9223372036854775807 - 1", I64_MIN, "i64"),
    ("9223372036854775807", I64_MAX, "i64"),
    ("16777217", 16777217, "i64"),  # not an f32
    ("true", True, "bool"),
    ("false", False, "bool"),
]


def expected(value, to: str):
    """The documented result of converting `value` to `to`, computed without NumPy casts."""
    if to == "i64":
        if isinstance(value, float):
            return int(value) if not math.isnan(value) and -(2.0**63) <= value < 2.0**63 else I64_MIN
        return int(value)
    if to == "f32":
        with np.errstate(over="ignore"):
            return float(np.float32(value))  # IEEE round to nearest, overflowing to infinity
    return float(value)


@pytest.mark.parametrize("to", ["i64", "f32", "f64"])
@pytest.mark.parametrize("expr, value, dtype", EDGES, ids=[e for e, _, _ in EDGES])
def test_folded_and_run_time_conversions_agree(expr, value, dtype, to):
    folded = diffc.compile(f"fn main() = {to}({expr})").main()
    arg = np.asarray(value, dtype={"f64": np.float64, "f32": np.float32, "i64": np.int64, "bool": np.bool_}[dtype])
    run_time = diffc.compile(f"fn main(x) = {to}(x)").main(arg)
    want = expected(value, to)
    for got in (folded, run_time):
        assert type(got) is type(want)
        assert got == want or (math.isnan(got) and math.isnan(want)), (got, want)
        if isinstance(want, float) and want == 0:
            assert math.copysign(1, got) == math.copysign(1, want)


def test_conversions_in_arrays_agree_with_the_fold():
    """The vectorised loop (array arguments) and the compile-time fold of convert_p."""
    xs = np.array([v for _, v, d in EDGES if d == "f64"] * 3)
    got = diffc.compile("fn main(x) = i64(x)").main(xs)
    (folded,) = convert_p.fold(xs, dtype=DType.I64)
    assert got.tolist() == folded.tolist() == [expected(v, "i64") for v in xs.tolist()]
    got32 = diffc.compile("fn main(x) = i64(f32(x))").main(xs)
    assert got32.tolist() == [expected(expected(v, "f32"), "i64") for v in xs.tolist()]

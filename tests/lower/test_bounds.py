"""Indices that a comprehension's loop bounds keep in range (i, i + 1 below the end, j * 2)
are not checked while the code runs; any other dynamic index is."""

import numpy as np
import pytest

import diffc
from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.typesys import TensorType, f64, i64

SRC = """
fn inside(x) = for i in 0..4 => x[i] + x[i + 1] + x[2 * i]
fn outside(x) = for i in 0..4 => x[i + 5]
fn dynamic(x, k) = x[k]
"""


def checks(fn, *types):
    m = diffc.compile(SRC)
    prog, _ = to_ir(m.ast, fn, types)
    return len(lower_program(prog).sites)


def test_in_range_loop_indices_are_not_checked():
    assert checks("inside", TensorType(f64, (8,))) == 0
    np.testing.assert_allclose(diffc.compile(SRC).inside(np.arange(8.0)), [1.0, 5.0, 9.0, 13.0])


def test_other_indices_are_checked():
    assert checks("outside", TensorType(f64, (8,))) == 1
    with pytest.raises(diffc.BoundsError):
        diffc.compile(SRC).outside(np.arange(8.0))
    assert checks("dynamic", TensorType(f64, (8,)), TensorType(i64, ())) == 1

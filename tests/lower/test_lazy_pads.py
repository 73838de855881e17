"""A slice's cotangent is a pad: zeros with the cotangent at the slice's place. Read by an
elementwise op (the cotangents of two slices of one array added), it stays Lazy, each element
read in a branch that LLVM makes a masked load, so `sum((x[1:] - x[:-1]) ** 2)`'s gradient is
one loop after the forward, not a zero fill and a copy per slice (See Note [Pads] in
prims/shape.py). The gradients against NumPy, exactly: NaN, inf, every axis, f32, many
threads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.native import on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc.lower import jit
from diffc.lower.emit import PARALLEL_MIN
from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.runtime.values import type_of

SRC = """
fn shifted(x) = sum((x[1:] - x[:-1]) ** 2)
fn weighted(x, a, b) = sum(x[1:] * a + x[:-1] * b)
fn corners(x, a, b) = sum(x[1:, :-2] * a) + sum(x[:-1, 2:] * b)
fn middle(x, a) = sum(x[:, 1:-1, 2:] * a)
fn one_side(x, a) = sum(x[2:] * a)
"""


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def padded(g, starts, shape):
    out = np.zeros(shape, g.dtype)
    out[tuple(slice(lo, lo + d) for lo, d in zip(starts, g.shape))] = g
    return out


def test_the_cotangents_of_two_slices_are_added_in_one_loop(m):
    x = np.zeros(1000)
    prog, _ = to_ir(m.ast, "shifted", (type_of(x),), transform=("grad", (0,), True))
    raw = str(lower_program(prog).module)
    optimised = str(jit.optimise(raw))
    assert "pad.in" in raw  # (the pads read lazily, by the add)
    assert "masked.load" in optimised and "masked.gather" not in optimised


@pytest.mark.parametrize("n", [1, 2, 3, 17, 1000, PARALLEL_MIN + 5])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_shifted_and_weighted_gradients(m, n, dtype):
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(dtype)
    a, b = (rng.standard_normal(max(n - 1, 0)).astype(dtype) for _ in range(2))
    if n > 3:
        a[0], a[-1], b[1] = np.nan, np.inf, -np.inf
    d = x[1:] - x[:-1]
    want_shifted = padded(2 * d, (1,), (n,)) - padded(2 * d, (0,), (n,))
    want_weighted = padded(a, (1,), (n,)) + padded(b, (0,), (n,))
    shifted, weighted = diffc.grad(m.shifted), diffc.grad(m.weighted)
    results = on_each_count(lambda: (shifted(x), weighted(x, a, b)))
    for got_shifted, got_weighted in results:
        assert got_shifted.dtype == dtype and got_shifted.shape == (n,)
        np.testing.assert_allclose(got_shifted, want_shifted, rtol=1e-6 if dtype is np.float32 else 1e-14)
        np.testing.assert_array_equal(got_weighted, want_weighted)
    assert all(np.array_equal(r[1], results[0][1], equal_nan=True) for r in results)


@pytest.mark.parametrize("shape", [(3, 4), (40, 70), (300, 301)])
def test_slices_of_a_matrix_on_both_axes(m, shape):
    rng = np.random.default_rng(shape[0])
    x = rng.standard_normal(shape)
    a = rng.standard_normal((shape[0] - 1, shape[1] - 2))
    b = rng.standard_normal((shape[0] - 1, shape[1] - 2))
    a[0, 0], b[-1, -1] = np.nan, np.inf
    want = padded(a, (1, 0), shape) + padded(b, (0, 2), shape)
    for got in on_each_count(lambda: diffc.grad(m.corners)(x, a, b)):
        np.testing.assert_array_equal(got, want)


def test_a_pad_read_by_no_elementwise_op_is_written_whole(m):
    """One slice's cotangent alone is the result: it is stored, zeros first."""
    x = np.arange(24.0).reshape(2, 3, 4)
    a = np.full((2, 1, 2), 5.0)
    np.testing.assert_array_equal(diffc.grad(m.middle)(x, a), padded(a, (0, 1, 2), x.shape))
    x1 = np.arange(6.0)
    np.testing.assert_array_equal(diffc.grad(m.one_side)(x1, np.ones(4)), [0, 0, 1, 1, 1, 1.0])


def test_a_pad_of_a_transposed_cotangent():
    m = diffc.compile("fn f(x, a) = sum(transpose(x)[1:] * a) + sum(x * x)")
    rng = np.random.default_rng(0)
    x, a = rng.standard_normal((70, 90)), rng.standard_normal((89, 70))
    np.testing.assert_allclose(diffc.grad(m.f)(x, a), padded(a, (1, 0), (90, 70)).T + 2 * x, rtol=1e-14)


@st.composite
def two_slices(draw):
    """A shape of 1-3 axes and two slices of it, each axis cut at both ends or not."""
    shape = draw(st.lists(st.integers(1, 9), min_size=1, max_size=3))
    cuts = []
    for _ in range(2):
        cut = []
        for n in shape:
            lo = draw(st.integers(0, n - 1))
            cut.append((lo, draw(st.integers(lo + 1, n))))
        cuts.append(cut)
    return shape, cuts, draw(st.sampled_from([np.float64, np.float32]))


@settings(max_examples=25, deadline=None)
@given(two_slices())
def test_generated_slices_of_one_array(case):
    """The gradient of sum(x[s] * a + ...) over two slices of x is their pads added: exactly."""
    shape, cuts, dtype = case
    text = lambda cut: ", ".join(f"{lo}:{hi}" for lo, hi in cut)  # noqa: E731
    m = diffc.compile(f"fn f(x, a, b) = sum(x[{text(cuts[0])}] * a) + sum(x[{text(cuts[1])}] * b)")
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    a, b = (rng.standard_normal([hi - lo for lo, hi in cut]).astype(dtype) for cut in cuts)
    want = padded(a, [lo for lo, _ in cuts[0]], shape) + padded(b, [lo for lo, _ in cuts[1]], shape)
    np.testing.assert_array_equal(diffc.grad(m.f)(x, a, b), want)

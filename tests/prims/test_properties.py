"""Property tests: random small arrays through elementwise chains, broadcasting, reductions,
integer division and matrix products, compared with NumPy (tests/support/reference.py).

Each new shape compiles a new specialisation (~10-100 ms), so examples are kept few."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from support import reference as R
from support.native import module

PROPERTY = settings(max_examples=30, deadline=None)

CHAIN = module("""
    fn chain(x, y) = tanh(x * y + 1.0) - sigmoid(x) * exp(-abs(y)) + maximum(x, y) / (1.0 + y * y)
    fn smooth(x) = log1p(x * x) + sqrt(abs(x)) * cos(x) - sin(2.0 * x) ** 2
    fn bcast(x, y) = (x + y) * (x - y) + where(x > y, x, y) - minimum(x, 0.5 * y)
    fn bcast_reduced(x, y) = (sum((x - y) ** 2), max(x * y, axis=0), sum(exp(x) - y, axis=-1))
    fn whole(x) = (sum(x), max(x), min(x), mean(x), argmax(x), prod(x / (1.0 + abs(x))))
    fn intdiv(a, b) = (a // b, a % b, (a // b) * b + a % b)
    fn floatdiv(a, b) = (a // b, a % b)
    fn mm(a, b) = a @ b
""")

floats = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=64)
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def arrays(shape, elements=floats, dtype=np.float64):
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def same_shape_pair(draw):
    s = draw(shapes)
    return draw(arrays(s)), draw(arrays(s))


@st.composite
def broadcast_pair(draw):
    """Two arrays whose shapes broadcast: the second drops leading axes and sets some to 1."""
    s = draw(shapes)
    drop = draw(st.integers(0, len(s) - 1))
    t = tuple(1 if draw(st.booleans()) else d for d in s[drop:])
    x, y = draw(arrays(s)), draw(arrays(t))
    return (x, y) if draw(st.booleans()) else (y, x)


def close(got, want, rtol=1e-10, atol=1e-12):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@PROPERTY
@given(same_shape_pair())
def test_elementwise_chain(xy):
    x, y = xy
    want = np.tanh(x * y + 1) - R.sigmoid(x) * np.exp(-np.abs(y)) + np.maximum(x, y) / (1 + y * y)
    close(CHAIN.chain(x, y), want)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_reductions_propagate_nan_per_element_along_any_axis(axis):
    """Keeping the last axis, a reduction combines whole rows element by element; reducing it,
    one accumulator and a NaN flag per result: NaN reaches exactly the results it should."""
    x = np.random.default_rng(axis).standard_normal((5, 6, 7))
    x[1, 2, 3] = x[4, 0, 6] = np.nan
    s, mx, mn, mean, prod, am = reducer(axis).red(x)
    for got, want in ((s, x.sum(axis)), (mx, x.max(axis)), (mn, x.min(axis)), (prod, x.prod(axis))):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        close(np.nan_to_num(got), np.nan_to_num(want))
    np.testing.assert_array_equal(am, np.argmax(x, axis))  # the first NaN
    ints = np.arange(210).reshape(5, 6, 7) % 11 - 5
    int_sum, int_max = module(f"fn f(x) = (sum(x, axis={axis}), max(x, axis={axis}))").f(ints)
    np.testing.assert_array_equal(int_sum, ints.sum(axis))
    np.testing.assert_array_equal(int_max, ints.max(axis))


@PROPERTY
@given(shapes.flatmap(arrays))
def test_unary_chain(x):
    close(CHAIN.smooth(x), np.log1p(x * x) + np.sqrt(np.abs(x)) * np.cos(x) - np.sin(2 * x) ** 2)


@PROPERTY
@given(broadcast_pair())
def test_broadcasting_chain(xy):
    x, y = xy
    close(CHAIN.bcast(x, y), (x + y) * (x - y) + np.where(x > y, x, y) - np.minimum(x, 0.5 * y))


@PROPERTY
@given(broadcast_pair())
def test_broadcasting_chain_into_reductions(xy):
    """Elementwise chains read by a reduction are fused into its loop (no temporaries)."""
    x, y = xy
    total, mx, rows = CHAIN.bcast_reduced(x, y)
    close(total, ((x - y) ** 2).sum())
    close(mx, (x * y).max(axis=0))
    close(rows, (np.exp(x) - y).sum(axis=-1))


@functools.cache
def reducer(axis: int):
    return module(
        f"fn red(x) = (sum(x, axis={axis}), max(x, axis={axis}), min(x, axis={axis}), "
        f"mean(x, axis={axis}), prod(x, axis={axis}), argmax(x, axis={axis}))"
    )


@PROPERTY
@given(st.data())
def test_reductions_along_an_axis(data):
    x = data.draw(shapes.flatmap(arrays))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    s, mx, mn, mean, prod, am = reducer(axis).red(x)
    close(s, x.sum(axis))
    close(mx, x.max(axis))
    close(mn, x.min(axis))
    close(mean, x.mean(axis))
    close(prod, x.prod(axis))
    np.testing.assert_array_equal(am, np.argmax(x, axis))


@PROPERTY
@given(shapes.flatmap(arrays))
def test_whole_array_reductions(x):
    s, mx, mn, mean, am, prod = CHAIN.whole(x)
    close(s, x.sum())
    assert mx == x.max() and mn == x.min()
    close(mean, x.mean())
    assert am == R.argmax_flat(x)
    close(prod, np.prod(x / (1 + np.abs(x))))


@PROPERTY
@given(st.data())
def test_integer_floor_division(data):
    s = data.draw(shapes)
    a = data.draw(arrays(s, st.integers(-50, 50), np.int64))
    b = data.draw(arrays(s, st.integers(-7, 7).filter(bool), np.int64))
    q, r, back = CHAIN.intdiv(a, b)
    np.testing.assert_array_equal(q, a // b)
    np.testing.assert_array_equal(r, a % b)
    np.testing.assert_array_equal(back, a)


@PROPERTY
@given(st.data())
def test_float_floor_division(data):
    s = data.draw(shapes)
    a = data.draw(arrays(s, st.floats(-50, 50, allow_nan=False)))
    b = data.draw(arrays(s, st.floats(0.125, 8.0) | st.floats(-8.0, -0.125)))
    q, r = CHAIN.floatdiv(a, b)
    np.testing.assert_array_equal(q, a // b)
    np.testing.assert_allclose(r, a % b, rtol=1e-12, atol=1e-12)


@PROPERTY
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.booleans(), st.booleans(), st.data())
def test_matmul(n, k, m, vec_a, vec_b, data):
    a = data.draw(arrays((k,) if vec_a else (n, k)))
    b = data.draw(arrays((k,) if vec_b else (k, m)))
    close(CHAIN.mm(a, b), a @ b)

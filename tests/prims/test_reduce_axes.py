"""Reductions over every subset of the axes of a rank-4 array, on arrays and transposed views,
and max and min's gradient (the extreme_scatter primitive) against NumPy: ties, NaN, -inf,
empty axes. The lowering walks x in memory order when the last axis is kept, and in a
transposed view's memory order (prims/reduce.py): each such walk is checked here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support import reference as R
from support.native import ir_of, module, prim_names

import diffc

SHAPE = (2, 3, 4, 3)
SUBSETS = [s for k in range(1, 5) for s in itertools.combinations(range(4), k)]


def _data(kind):
    rng = np.random.default_rng(sum(map(ord, kind)))
    x = rng.integers(-2, 3, SHAPE).astype(np.float64)  # many ties
    if kind == "nan":
        x.flat[[3, 40, 41]] = np.nan
    elif kind == "inf":
        x[...] = -np.inf
        x.flat[[5, 50]] = np.inf
    return x


def _program(axes):
    ax = list(axes)
    return diffc.compile(
        f"fn f(x) = (sum(x, axis={ax}), max(x, axis={ax}), min(x, axis={ax}), prod(x, axis={ax}))\n"
        f"fn t(x) = (sum(transpose(x), axis={ax}), max(transpose(x), axis={ax}))\n"
        f"fn gmax(x, w) = grad(fn(y) => sum(max(y, axis={ax}) * w))(x)\n"
        f"fn gmin(x, w) = grad(fn(y) => sum(min(transpose(y), axis={ax}) * w))(x)\n"
        # the cotangent's own derivative: d/dw of sum(grad_x * c) is c at each group's pick
        f"fn gw(x, w, c) = grad(fn(w) => sum(grad(fn(y) => sum(max(y, axis={ax}) * w))(x) * c))(w)\n"
        # y's later use gives max's rule a cotangent so far, which the scatter adds to in place
        f"fn gadd(x, w, v) = grad(fn(y) => sum(max(y, axis={ax}) * w) + sum(y * v))(x)\n"
        f"fn gaddw(x, w, v, c) = grad(fn(w, v) => sum(gadd(x, w, v) * c), (0, 1))(w, v)\n"
    )


@pytest.mark.parametrize("axes", SUBSETS, ids=lambda a: "".join(map(str, a)))
def test_reductions_and_max_gradient_over_axes(axes):
    m = _program(axes)
    rng = np.random.default_rng(len(axes))
    kept = tuple(d for k, d in enumerate(SHAPE) if k not in axes)
    kept_t = tuple(d for k, d in enumerate(SHAPE[::-1]) if k not in axes)
    for kind in ("ties", "nan", "inf"):
        x = _data(kind)
        with np.errstate(invalid="ignore"):
            want = (np.sum(x, axes), np.max(x, axes), np.min(x, axes), np.prod(x, axes))
            want_t = (np.sum(x.T, axes), np.max(x.T, axes))
        for got, ref in zip(m.f(x) + m.t(x), want + want_t):
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12, equal_nan=True)
        w, wt, c = rng.standard_normal(kept), rng.standard_normal(kept_t), rng.standard_normal(SHAPE)
        np.testing.assert_array_equal(m.gmax(x, w), R.extreme_scatter(x, w, axes, "max"))
        np.testing.assert_array_equal(m.gmin(x, wt), R.extreme_scatter(x.T, wt, axes, "min").T)
        pick = R.extreme_scatter(x, np.ones(kept), axes, "max") != 0
        np.testing.assert_allclose(m.gw(x, w, c), np.sum(np.where(pick, c, 0.0), axis=axes), rtol=1e-12)
        w.flat[::2] = 0.0  # groups with a zero cotangent are not searched
        v = rng.standard_normal(SHAPE)
        np.testing.assert_array_equal(m.gmax(x, w), R.extreme_scatter(x, w, axes, "max"))
        np.testing.assert_array_equal(m.gadd(x, w, v), v + R.extreme_scatter(x, w, axes, "max"))
        gw, gv = m.gaddw(x, w, v, c)
        np.testing.assert_allclose(gw, np.sum(np.where(pick, c, 0.0), axis=axes), rtol=1e-12)
        np.testing.assert_array_equal(gv, c)


def test_forward_mode_of_the_cotangent():
    """jvp through grad(max): the tangent of w goes to the same picks."""
    m = diffc.compile("fn g(x, w) = grad(fn(y) => sum(max(y, axis=(1, 2)) * w))(x)")
    x, w, tw = _data("ties"), np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    _, tan = diffc.jvp(m.g)(x, w, np.zeros_like(x), tw)
    np.testing.assert_array_equal(tan, R.extreme_scatter(x, tw, (1, 2)))


@pytest.mark.parametrize("shape,axes", [((0, 3), (0,)), ((3, 0), (0,)), ((2, 0, 3), (1, 2)), ((0, 2, 2), (2,))])
def test_empty_shapes(shape, axes):
    ax = list(axes)
    m = diffc.compile(f"fn f(x) = sum(x, axis={ax})\nfn g(x) = grad(fn(y) => sum(max(y, axis={ax})))(x)")
    x = np.zeros(shape)
    np.testing.assert_array_equal(m.f(x), np.sum(x, axes))
    if all(shape[a] for a in axes):
        np.testing.assert_array_equal(m.g(x), R.extreme_scatter(x, np.ones(np.sum(x, axes).shape), axes))


def test_f32_max_pool_gradient():
    """2x2 max-pooling (a max over the last axis, then over a middle one) picks the first of ties."""
    m = diffc.compile("import nn\nfn g(x) = grad(fn(y) => sum(nn.max_pool2d(y, 2, 2)))(x)")
    x = np.random.default_rng(0).integers(0, 2, (2, 3, 4, 6)).astype(np.float32)
    tiles = x.reshape(2, 3, 2, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 2, 3, 4)
    want = R.extreme_scatter(tiles, np.ones((2, 3, 2, 3), np.float32), (4,))
    want = want.reshape(2, 3, 2, 3, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)
    got = m.g(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_max_gradient_is_one_op():
    """grad(max) over a middle axis: one extreme_scatter, no argmax pass or transposed mask."""
    m = module("fn g(x) = grad(fn(y) => sum(max(y, axis=(1, 2))))(x)")
    names = prim_names(ir_of(m, "g", _data("ties")))
    assert "extreme_scatter" in names
    assert not names & {"argmax", "transpose", "eq", "select"}


def test_max_gradient_adds_into_the_cotangent_so_far():
    """grad of max(x) beside another use of x: the scatter adds into that use's cotangent (one
    extreme_scatter with a base, no array of x's shape added after it); forward mode through it."""
    src = "fn g(x, v) = grad(fn(y) => sum(max(y, axis=-1)) + sum(exp(y) * v))(x)"
    m = module(src)
    eqns = ir_of(m, "g", _data("ties"), np.ones(SHAPE)).main.body.eqns
    (scatter,) = [e for e in eqns if e.prim.name == "extreme_scatter"]
    assert len(scatter.inputs) == 3
    assert not [e for e in eqns if e.prim.name == "add" and scatter.outs[0] in e.inputs]
    x, v = _data("ties"), np.random.default_rng(1).standard_normal(SHAPE)
    want = np.exp(x) * v + R.extreme_scatter(x, np.ones(SHAPE[:-1]), (3,))
    np.testing.assert_allclose(m.g(x, v), want, rtol=1e-14)
    _, tan = diffc.jvp(m.g)(x, v, np.zeros_like(x), np.ones_like(v))
    np.testing.assert_allclose(tan, np.exp(x), rtol=1e-14)


def test_zero_cotangents_keep_their_sign():
    """A group whose cotangent is -0.0 is searched (its pick holds -0.0); +0.0 is all +0.0."""
    m = diffc.compile("fn g(x, w) = grad(fn(y) => sum(max(y, axis=1) * w))(x)")
    x = np.array([[1.0, 3.0, 2.0], [5.0, 4.0, 6.0]])
    got = m.g(x, np.array([-0.0, 0.0]))
    assert np.signbit(got[0, 1]) and np.signbit(got).sum() == 1
    assert not np.any(got)


def test_transpose_of_a_broadcast_scalar():
    """grad(sum(transpose(x))): the cotangent, a broadcast 1.0, is transposed as a scalar."""
    m = diffc.compile("fn g(x) = grad(fn(y) => sum(transpose(y, [2, 0, 1]) * 2.0))(x)")
    x = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(m.g(x), np.full(x.shape, 2.0))

"""Derivatives of the issue-11 built-ins where finite differences cannot be the oracle: the
piecewise constant floor, ceil, round and sign (a derivative of 0, as JAX gives, not an error),
clip at its bounds (x's derivative is 1 on the closed interval, as JAX's), std of a constant
(0, not NaN), logsumexp at infinities (all -inf: -inf with a gradient of 0; a +inf: +inf and no
NaN in the gradient). grad, vjp and jvp along each unit vector must agree with the exact
gradient."""

from __future__ import annotations

import numpy as np
import pytest

import diffc

INF = np.inf

SRC = """
fn rounded(x) = sum(floor(x) + ceil(x) + round(x) + sign(x) + f64(isnan(x)) + f64(isfinite(x)))
fn rounded_times(x) = sum(round(x) * x)
fn clip01(x) = sum(clip(x, 0.0, 1.0))
fn clip_lo(lo, x) = clip(x, lo, 1.0)
fn max2(x, y) = max(x, y)
fn min2(x, y) = min(x, y)
fn std_all(x) = std(x)
fn std_rows(m) = sum(std(m, axis=1, keepdims=true))
fn var_all(x) = var(x)
fn lse(x) = logsumexp(x)
fn lse_rows(m) = sum(logsumexp(m, axis=1) * [1.0, 2.0])
fn tan0(x) = tan(x)
"""

# (function, arguments, gradient w.r.t. the first argument)
ROWS = [
    ("rounded", (np.array([0.5, -1.5, 2.0, 0.0, 2.7]),), [0.0] * 5),
    ("rounded_times", (np.array([0.5, 1.5, -2.5, 0.0]),), [0.0, 2.0, -2.0, 0.0]),
    ("clip01", (np.array([-0.5, 0.0, 0.5, 1.0, 1.5]),), [0.0, 1.0, 1.0, 1.0, 0.0]),
    ("clip_lo", (0.5, 0.2), 1.0),
    ("clip_lo", (0.5, 0.5), 0.0),  # at the bound x gets the derivative
    ("max2", (1.0, 1.0), 1.0),
    ("min2", (1.0, 1.0), 1.0),
    ("max2", (1.0, 2.0), 0.0),
    ("std_all", (np.array([3.0, 3.0, 3.0]),), [0.0, 0.0, 0.0]),
    ("std_all", (np.array([1.0, 3.0]),), [-0.5, 0.5]),
    ("std_rows", (np.array([[2.0, 2.0], [1.0, 3.0]]),), [[0.0, 0.0], [-0.5, 0.5]]),
    ("var_all", (np.array([3.0, 3.0]),), [0.0, 0.0]),
    ("lse", (np.array([-INF, -INF]),), [0.0, 0.0]),
    ("lse", (np.array([-INF, 0.0]),), [0.0, 1.0]),
    ("lse", (np.array([1000.0, 1000.0]),), [0.5, 0.5]),
    ("lse", (np.array([-1000.0, -1000.0]),), [0.5, 0.5]),
    ("lse", (np.array([1.0, INF]),), [0.0, 0.0]),
    ("lse_rows", (np.array([[-INF, -INF], [0.0, 0.0]]),), [[0.0, 0.0], [1.0, 1.0]]),
    ("tan0", (0.0,), 1.0),
]

VALUES = [
    ("lse", (np.array([-INF, -INF]),), -INF),
    ("lse", (np.array([1.0, INF]),), INF),
    ("lse", (np.array([-INF, INF]),), INF),
    ("lse", (np.array([1.0, np.nan]),), np.nan),
    ("lse", (np.array([1000.0, 1000.0]),), 1000.0 + np.log(2.0)),
    ("lse", (np.array([-1000.0, -1000.0]),), -1000.0 + np.log(2.0)),
    ("std_all", (np.array([3.0, 3.0, 3.0]),), 0.0),
    ("std_all", (np.array([1.0, np.nan]),), np.nan),
]


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def _unit_vectors(x):
    x = np.asarray(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[idx] = 1.0
        yield idx, (e if x.ndim else 0.0 + e[()])


@pytest.mark.parametrize("name, args, want", ROWS, ids=[f"{r[0]}{r[1]}" for r in ROWS])
def test_derivative_at_edge(m, name, args, want):
    f = getattr(m, name)
    np.testing.assert_allclose(diffc.grad(f)(*args), want, rtol=1e-12, atol=1e-15)
    (ct, *_) = diffc.vjp(f)(*args, np.ones_like(f(*args)))
    np.testing.assert_allclose(ct, want, rtol=1e-12, atol=1e-15)
    rest_zero = tuple(0.0 * np.asarray(a) for a in args[1:])
    for idx, e in _unit_vectors(args[0]):
        _, t = diffc.jvp(f)(*args, e, *rest_zero)
        np.testing.assert_allclose(t, np.asarray(want)[idx], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, args, want", VALUES, ids=[f"{r[0]}{r[1]}" for r in VALUES])
def test_value_at_edge(m, name, args, want):
    np.testing.assert_allclose(getattr(m, name)(*args), want, rtol=1e-12)

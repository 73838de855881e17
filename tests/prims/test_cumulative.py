"""cumsum, cumprod and cummax (prims/cumulative.py: the linrec and cumargmax primitives) against
NumPy at the edges (zeros, ties, infinities, NaN, empty axes, f32, integers), and their
derivatives where finite differences cannot look: at zeros of cumprod and at ties of cummax."""

from __future__ import annotations

import numpy as np
import pytest

import diffc
from diffc.errors import DiffcError

pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # NumPy's 0 * inf

M = diffc.compile("""
    fn cumsum_last(x) = cumsum(x)
    fn cumsum_0(x) = cumsum(x, axis=0)
    fn cumsum_rev(x) = cumsum(x, axis=-1, reverse=true)
    fn cumsum_0_rev(x) = cumsum(x, axis=0, reverse=true)
    fn cumprod_last(x) = cumprod(x)
    fn cumprod_0(x) = cumprod(x, axis=0)
    fn cumprod_rev(x) = cumprod(x, reverse=true)
    fn cumprod_0_rev(x) = cumprod(x, axis=0, reverse=true)
    fn cummax_last(x) = cummax(x)
    fn cummax_0(x) = cummax(x, axis=0)
    fn grad_cumprod(x) = grad(fn(x) => sum(cumprod(x)))(x)
    fn grad_cumprod_rev0(x, w) = grad(fn(x) => sum(cumprod(x, axis=0, reverse=true) * w))(x)
    fn hess_cumprod(x, v) = grad(fn(x) => grad(fn(y) => sum(cumprod(y)))(x) @ v)(x)
    fn jvp_cumprod(x, v) = jvp(fn(y) => cumprod(y), (x,), (v,))
    fn grad_cummax(x, w) = grad(fn(x) => sum(cummax(x) * w))(x)
""")


def flip(x, axis):
    return np.flip(x, axis=axis)


def reference(name, x, axis, reverse):
    fn = {"cumsum": np.cumsum, "cumprod": np.cumprod, "cummax": np.maximum.accumulate}[name]
    if x.dtype == bool:
        x = x.astype(np.int64)
    if reverse:
        return flip(fn(flip(x, axis), axis=axis), axis)
    return fn(x, axis=axis)


VARIANTS = [  # (function, name, axis, reverse) for 2-d inputs
    ("cumsum_last", "cumsum", -1, False),
    ("cumsum_0", "cumsum", 0, False),
    ("cumsum_rev", "cumsum", -1, True),
    ("cumsum_0_rev", "cumsum", 0, True),
    ("cumprod_last", "cumprod", -1, False),
    ("cumprod_0", "cumprod", 0, False),
    ("cumprod_rev", "cumprod", -1, True),
    ("cumprod_0_rev", "cumprod", 0, True),
    ("cummax_last", "cummax", -1, False),
    ("cummax_0", "cummax", 0, False),
]

SPECIAL = np.array([[0.0, -0.0, 1.5, np.inf, -2.0], [np.nan, 3.0, 3.0, -np.inf, 0.0], [2.0, 2.0, 0.0, 1.0, np.inf]])


def inputs():
    rng = np.random.default_rng(7)
    yield "normal", rng.normal(size=(4, 5))
    yield "f32", rng.normal(size=(3, 6)).astype(np.float32)
    yield "special", SPECIAL
    yield "ints-ties", rng.integers(-3, 4, size=(4, 5))
    yield "bool", rng.random((3, 4)) < 0.5
    yield "empty-axis", np.zeros((3, 0))
    yield "empty-rows", np.zeros((0, 4))
    yield "one", np.array([[2.5]])


@pytest.mark.parametrize("fn,name,axis,reverse", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("label,x", list(inputs()), ids=[label for label, _ in inputs()])
def test_values_match_numpy(fn, name, axis, reverse, label, x):
    got = getattr(M, fn)(x)
    want = reference(name, x, axis, reverse)
    assert got.shape == want.shape
    assert got.dtype == (np.int64 if x.dtype == bool else x.dtype)
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, equal_nan=True)


def test_rank1_and_rank3():
    x = np.random.default_rng(1).normal(size=(2, 3, 4))
    m = diffc.compile("fn f(x, v) = (cumsum(x, axis=1), cumprod(x, axis=2), cummax(x, axis=0), cumsum(v), cummax(v))")
    v = np.array([1.0, -1.0, 4.0])
    a, b, c, d, e = m.f(x, v)
    np.testing.assert_allclose(a, np.cumsum(x, axis=1))
    np.testing.assert_allclose(b, np.cumprod(x, axis=2))
    np.testing.assert_array_equal(c, np.maximum.accumulate(x, axis=0))
    np.testing.assert_array_equal(d, np.cumsum(v))
    np.testing.assert_array_equal(e, np.maximum.accumulate(v))


def test_int_cumsum_wraps_as_numpy():
    x = np.array([2**62, 2**62, 2**62, -(2**63)], dtype=np.int64)
    np.testing.assert_array_equal(M.cumsum_last(x), np.cumsum(x))


def prod_except(x, j, upto):
    """The product of x[0..upto] without x[j]: d cumprod(x)[upto] / d x[j]."""
    return np.prod([x[k] for k in range(upto + 1) if k != j])


@pytest.mark.parametrize(
    "x",
    [
        np.array([2.0, 0.0, 3.0, -1.5]),
        np.array([0.0, 0.0, 2.0, 5.0]),
        np.array([0.0, 1.0, 0.0, 2.0, 0.0]),
        np.array([0.0]),
        np.array([3.0, 2.0, 0.5]),
    ],
)
def test_cumprod_derivative_is_exact_at_zeros(x):
    n = len(x)
    want = np.array([sum(prod_except(x, j, i) for i in range(j, n)) for j in range(n)])
    got = M.grad_cumprod(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    v = np.random.default_rng(3).normal(size=n)
    y, dy = M.jvp_cumprod(x, v)
    jac = np.array([[prod_except(x, j, i) if j <= i else 0.0 for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(dy, jac @ v, rtol=1e-13, atol=1e-15)
    # the Hessian of sum(cumprod(x)) has entries sum over i >= max(j, k) of the product without
    # x[j] and x[k]: exact at zeros too
    hess = np.zeros((n, n))
    for j in range(n):
        for k in range(n):
            if j != k:
                hess[j, k] = sum(np.prod([x[m] for m in range(i + 1) if m not in (j, k)]) for i in range(max(j, k), n))
    np.testing.assert_allclose(M.hess_cumprod(x, v), hess @ v, rtol=1e-12, atol=1e-14)


def test_cumprod_reverse_axis0_gradient_at_zeros():
    x = np.array([[1.5, 0.0], [0.0, 2.0], [3.0, 0.0]])
    w = np.array([[1.0, 2.0], [-1.0, 0.5], [0.25, 3.0]])
    g = M.grad_cumprod_rev0(x, w)
    want = np.zeros_like(x)
    for c in range(2):
        col = x[::-1, c]
        wc = w[::-1, c]
        for j in range(3):
            want[2 - j, c] = sum(wc[i] * prod_except(col, j, i) for i in range(j, 3))
    np.testing.assert_allclose(g, want, rtol=1e-13)


def test_cummax_routes_the_cotangent_to_the_first_running_maximum():
    x = np.array([1.0, 3.0, 3.0, 2.0, 5.0, 5.0, np.nan, 1.0])
    w = np.arange(1.0, 9.0)
    # the running argmax: 0, 1, 1, 1, 4, 4, 6, 6 (ties keep the first, a NaN takes over)
    want = np.array([1.0, 2 + 3 + 4, 0, 0, 5 + 6, 0, 7 + 8, 0])
    np.testing.assert_array_equal(M.grad_cummax(x, w), want)


@pytest.mark.parametrize(
    "src,message",
    [
        ("fn f() = cumsum(ones([2, 3]), axis=2)", "axis 2 is out of range"),
        ("fn f() = cumprod(3.0)", "`cumprod` needs an array"),
        ("fn f(r) = cumsum(ones([3]), reverse=r)", "must be true or false, known at compile time"),
        ("fn f() = cumsum(ones([3]), reverse=1)", "must be true or false"),
        ("fn f() = cummax(ones([3]), reverse=true)", "`cummax` has no keyword argument `reverse`"),
        ("fn f() = cumsum(ones([3]), ax=0)", "has no keyword argument `ax`"),
        ("fn f() = cumsum(ones([3]), ones([3]))", "takes 1 argument"),
    ],
)
def test_wrong_uses_are_located_errors(src, message):
    m = diffc.compile(src)
    with pytest.raises(DiffcError, match=message.replace("(", r"\(").replace("`", "`")) as e:
        m.f() if "(r)" not in src else m.f(True)
    assert e.value.span is not None

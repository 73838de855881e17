"""sort, argsort and top_k (prims/sort.py: a stable merge-sort argsort, the values gathered
through it) against NumPy: ties keep index order, NaN sorts last (first in top_k, where it
counts as largest, as in argmax), -0.0 and 0.0 tie, empty and length-1 axes, f32 and integers;
the derivative of the values scatters the cotangent back through the permutation."""

from __future__ import annotations

import numpy as np
import pytest

import diffc
from diffc.errors import DiffcError

M = diffc.compile("""
    fn sort_last(x) = sort(x)
    fn sort_0(x) = sort(x, axis=0)
    fn argsort_last(x) = argsort(x)
    fn argsort_0(x) = argsort(x, axis=0)
    fn top2(x) = top_k(x, 2)
    fn top0(x) = top_k(x, 0)
    fn grad_sort(x, w) = grad(fn(x) => sum(sort(x) * w))(x)
    fn grad_top2(x, w) = grad(fn(x) => sum(top_k(x, 2).0 * w[:, :2]))(x)
    fn jvp_sort(x, v) = jvp(fn(y) => sort(y, axis=0), (x,), (v,))
""")


def inputs():
    rng = np.random.default_rng(11)
    yield "normal", rng.normal(size=(4, 7))
    yield "f32", rng.normal(size=(3, 9)).astype(np.float32)
    yield "ints-ties", rng.integers(-3, 4, size=(5, 8))
    yield "int-extremes", np.array([[0, np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 0]])
    yield "special", np.array([[np.nan, 0.0, -0.0, np.inf, -np.inf, 1.0, np.nan, 0.0], [1.0] * 8])
    yield "bool", rng.random((2, 5)) < 0.5
    yield "empty-axis", np.zeros((3, 0))
    yield "empty-rows", np.zeros((0, 4))
    yield "one", np.array([[-1.5]])
    yield "long-odd", rng.normal(size=(2, 1001))


@pytest.mark.parametrize("label,x", list(inputs()), ids=[label for label, _ in inputs()])
def test_sort_and_argsort_match_numpy(label, x):
    base = x.astype(np.int64) if x.dtype == bool else x
    for axis, s, a in ((-1, M.sort_last, M.argsort_last), (0, M.sort_0, M.argsort_0)):
        order = np.argsort(base, axis=axis, kind="stable")
        np.testing.assert_array_equal(a(x), order)
        got = s(x)
        assert got.dtype == base.dtype
        np.testing.assert_array_equal(got, np.sort(base, axis=axis, kind="stable"))
        # -0.0 and 0.0 tie: the stable order keeps their signs where they were
        np.testing.assert_array_equal(np.signbit(got), np.signbit(np.take_along_axis(base, order, axis)))


def top_k_reference(x, k):
    """Largest first, ties lower index first, NaN largest (a stable sort of -x, NaN put first)."""
    key = np.where(np.isnan(x), -np.inf, -x) if x.dtype.kind == "f" else ~x  # ~x: -x - 1, no overflow
    nan_first = np.where(np.isnan(x), 0, 1) if x.dtype.kind == "f" else np.zeros_like(x)
    order = np.lexsort((np.broadcast_to(np.arange(x.shape[-1]), x.shape), key, nan_first), axis=-1)
    ids = order[..., :k]
    return np.take_along_axis(x, ids, -1), ids


@pytest.mark.parametrize("label,x", [c for c in inputs() if c[1].shape[-1] >= 2 and c[0] != "bool"])
def test_top_k_matches_the_reference(label, x):
    values, ids = M.top2(x)
    want_values, want_ids = top_k_reference(x, 2)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(values, want_values)
    v0, i0 = M.top0(x)
    assert v0.shape == x.shape[:-1] + (0,) and i0.shape == v0.shape and i0.dtype == np.int64


def test_top_k_of_ties_and_nan():
    values, ids = M.top2(np.array([1.0, 3.0, np.nan, 3.0, np.nan]))
    np.testing.assert_array_equal(ids, [2, 4])
    values, ids = M.top2(np.array([1.0, 3.0, 2.0, 3.0]))
    np.testing.assert_array_equal(ids, [1, 3])
    np.testing.assert_array_equal(values, [3.0, 3.0])


def test_sort_gradient_scatters_through_the_permutation():
    x = np.array([[3.0, 1.0, 2.0, 1.0], [0.5, -1.0, 4.0, 2.0]])
    w = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    order = np.argsort(x, axis=-1, kind="stable")
    want = np.zeros_like(x)
    np.put_along_axis(want, order, w, axis=-1)
    np.testing.assert_array_equal(M.grad_sort(x, w), want)
    want_top = np.zeros_like(x)
    want_top[0, [0, 2]] = w[0, :2]
    want_top[1, [2, 3]] = w[1, :2]
    np.testing.assert_array_equal(M.grad_top2(x, w), want_top)
    v = np.arange(8.0).reshape(2, 4)
    y, dy = M.jvp_sort(x, v)
    np.testing.assert_array_equal(dy, np.take_along_axis(v, np.argsort(x, axis=0, kind="stable"), 0))


def test_a_long_sort():
    x = np.random.default_rng(5).normal(size=100_000)
    m = diffc.compile("fn f(x) = (sort(x), argsort(x))")
    s, a = m.f(x)
    np.testing.assert_array_equal(s, np.sort(x))
    np.testing.assert_array_equal(a, np.argsort(x, kind="stable"))


@pytest.mark.parametrize(
    "src,message",
    [
        ("fn f() = sort(ones([2, 3]), axis=2)", "axis 2 is out of range"),
        ("fn f() = argsort(1.0)", "`argsort` needs an array"),
        ("fn f() = top_k(ones([2, 3]), 4)", "the k of `top_k` must be at most 3"),
        ("fn f() = top_k(ones([3]), -1)", "the k of `top_k` must be at least 0"),
        ("fn f() = top_k(ones([3]), 1.5)", "the k of `top_k` must be an integer"),
        ("fn f() = sort(ones([3]), descending=true)", "has no keyword argument `descending`"),
    ],
)
def test_wrong_uses_are_located_errors(src, message):
    m = diffc.compile(src)
    with pytest.raises(DiffcError, match=message) as e:
        m.f()
    assert e.value.span is not None

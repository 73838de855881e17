"""Reductions of one value over the same axes (its max and its sum over each row: the
cross-entropy's shift and the mean that label smoothing takes) are lowered together, in one
walk of the value (lower/emit.py, siblings; prims/reduce.py, _reduce_together): the value is
read from memory once. Values against NumPy at the edges (NaN, infinities, -0, empty axes),
in f32, f64 and i64, for values read in place, through a transposed view or computed on the
fly, on any number of threads; and what is not grouped (other axes, the last axis kept, a
reduction to one number) still right."""

from __future__ import annotations

import numpy as np
import pytest
from lower.test_llvm import loops_named
from support.native import module, on_each_count

M = module("""
    fn rows(x) = (max(x, axis=1), sum(x, axis=1), min(x, axis=1), prod(x, axis=1))
    fn max_sum(x) = (max(x, axis=-1), sum(x, axis=-1))
    fn inner(x) = (max(x, axis=(1, 2)), sum(x, axis=(1, 2)), max(x, axis=2))
    fn columns(x) = (max(x, axis=0), sum(x, axis=0))
    fn whole(x) = (max(x), sum(x))
    fn transposed(x) = (max(transpose(x), axis=1), sum(transpose(x), axis=1))
    fn computed(x) {
        let e = exp(x * 0.5);
        (max(e, axis=1), sum(e, axis=1))
    }
    fn sums(x) = (sum(x, axis=1), prod(x, axis=1))
    fn xent(z, y) = value_and_grad(fn(l) => mean(log(sum(exp(l), axis=1)) - 0.1 * mean(l, axis=1) - max(l, axis=1)))(z)
""")


def walks(capsys, tmp_path, source, *args) -> int:
    return loops_named(capsys, tmp_path, "red", source, *args)


def test_one_walk_of_the_rows(capsys, tmp_path):
    arg = ("--arg", "x=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]")
    assert walks(capsys, tmp_path, "fn main(x) = (max(x, axis=1), sum(x, axis=1))\n", *arg) == 1
    assert walks(capsys, tmp_path, "fn main(x) = (max(x, axis=1), sum(x * 2.0, axis=1))\n", *arg) == 2  # other values


def numpy_rows(x):
    return x.max(1), x.sum(1), x.min(1), x.prod(1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_values(dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((6, 9)) * 3).astype(dtype)
    tol = {"rtol": 1e-5 if dtype == np.float32 else 1e-13}
    for got, want in zip(M.rows(x), numpy_rows(x)):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, **tol)
    y = (rng.standard_normal((3, 4, 5)) * 3).astype(dtype)
    for got, want in zip(M.inner(y), (y.max((1, 2)), y.sum((1, 2)), y.max(2))):
        np.testing.assert_allclose(got, want, **tol)
    for got, want in zip(M.columns(x), (x.max(0), x.sum(0))):
        np.testing.assert_allclose(got, want, **tol)
    for got, want in zip(M.whole(x), (x.max(), x.sum())):
        np.testing.assert_allclose(got, want, **tol)
    for got, want in zip(M.transposed(x), (x.T.max(1), x.T.sum(1))):
        np.testing.assert_allclose(got, want, **tol)


def test_edges():
    x = np.array(
        [
            [1.0, np.nan, 2.0],
            [np.inf, 1.0, -1.0],
            [-np.inf, -np.inf, -np.inf],
            [-0.0, -0.0, -0.0],
            [np.inf, -np.inf, 0.0],
        ]
    )
    with np.errstate(invalid="ignore"):
        want = numpy_rows(x)
    for got, w in zip(M.rows(x), want):
        np.testing.assert_array_equal(got, w)
    assert np.signbit(M.rows(x)[0][3]) and np.signbit(M.rows(x)[1][3])  # max and sum of -0s
    s, p = M.sums(np.zeros((3, 0)))
    np.testing.assert_array_equal(s, np.zeros(3))
    np.testing.assert_array_equal(p, np.ones(3))
    assert M.max_sum(np.zeros((0, 4)))[0].shape == (0,)


def test_a_value_computed_on_the_fly():
    x = np.random.default_rng(3).standard_normal((7, 11))
    e = np.exp(x * 0.5)
    a, b = M.computed(x)
    np.testing.assert_allclose(a, e.max(1), rtol=1e-15)  # (exp within an ulp of NumPy's)
    np.testing.assert_allclose(b, e.sum(1), rtol=1e-14)


def test_same_results_on_any_number_of_threads():
    x = np.random.default_rng(4).standard_normal((512, 600))
    x[3, 7] = np.nan
    results = on_each_count(lambda: M.max_sum(x))
    for r in results[1:]:
        for a, b in zip(r, results[0]):
            assert np.array_equal(a, b, equal_nan=True)
    np.testing.assert_array_equal(results[0][0], x.max(1))
    np.testing.assert_allclose(results[0][1], x.sum(1), rtol=1e-12)


def test_gradient():
    z = np.random.default_rng(5).standard_normal((4, 6))
    v, g = M.xent(z, np.zeros(4, dtype=np.int64))
    lse = np.log(np.exp(z).sum(1))
    np.testing.assert_allclose(v, np.mean(lse - 0.1 * z.mean(1) - z.max(1)), rtol=1e-14)
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    first_max = np.eye(6)[z.argmax(1)]
    np.testing.assert_allclose(g, (soft - 0.1 / 6 - first_max) / 4, rtol=1e-12, atol=1e-15)

"""An elementwise op or a copy over contiguous arrays of one shape is one loop over the elements,
not a nest of one loop per axis (Note [Flat loops] in lower/emit.py): the loops in the IR,
and the values where the flat reading must match the nest's (lazy chains, scalars and single
elements broadcast, a map's rows at an offset, bools, empty arrays, NaN and -0, threads),
and where it must not be taken (broadcasting over some axes, transposes)."""

from __future__ import annotations

import numpy as np
import pytest
from lower.test_llvm import loops_named
from support.native import module, on_each_count

import diffc

WRITES = "(?:ew|cp)"  # the loops that write an elementwise result or copy one

M = module("""
    fn chain(a, b) = exp(a * b + 1.0) - a
    fn scaled(a, s) = a * s
    fn one(a, e) = a + e
    fn rows(x) = map(fn(r) => r * 2.0 + r, x)
    fn picked(a, b) = where(a > b, a, b * 0.5)
    fn counts(i, j) = i * j + 1
    fn across(a, c) = a * c
    fn turned(a) = transpose(a, [1, 0, 2, 3]) * 3.0
    fn loss(a, b) = sum(sin(a * b) * a)
""")


def write_loops(capsys, tmp_path, source: str, **arrays) -> int:
    args = []
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--arg", f"{name}={tmp_path / f'{name}.npy'}"]
    return loops_named(capsys, tmp_path, WRITES, source, *args)


def test_one_loop_over_the_elements(capsys, tmp_path):
    a = np.ones((8, 4, 3, 3))
    assert write_loops(capsys, tmp_path, "fn main(a, b) = exp(a * b + 1.0) - a\n", a=a, b=a) == 1
    assert write_loops(capsys, tmp_path, "fn main(a, e) = a + e\n", a=a, e=np.ones((1, 1, 1, 1))) == 1


def test_a_nest_where_the_reads_need_one(capsys, tmp_path):
    a = np.ones((8, 4, 3, 3))
    # broadcasting over some axes and a transpose read by axes: a loop per axis
    assert write_loops(capsys, tmp_path, "fn main(a, c) = a * c\n", a=a, c=np.ones((4, 1, 1))) == 4
    assert write_loops(capsys, tmp_path, "fn main(a) = transpose(a, [1, 0, 2, 3]) * 3.0\n", a=a) >= 4


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values(dtype):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((5, 4, 3, 3)).astype(dtype) for _ in range(2))
    a[0, 0, 0, :] = [np.nan, -0.0, np.inf]
    with np.errstate(invalid="ignore", over="ignore"):
        tol = {"rtol": 1e-6, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-14}
        np.testing.assert_allclose(M.chain(a, b), np.exp(a * b + 1) - a, **tol)
    assert np.signbit(M.scaled(a, dtype(1.0))[0, 0, 0, 1])  # -0 kept
    np.testing.assert_array_equal(M.scaled(a, dtype(2.0)), a * 2)
    np.testing.assert_array_equal(M.one(a, np.full((1, 1, 1, 1), 3.0, dtype)), a + 3)
    np.testing.assert_array_equal(M.rows(a), a * 2 + a)
    np.testing.assert_array_equal(M.picked(a, b), np.where(a > b, a, b * dtype(0.5)))
    c = rng.standard_normal((4, 1, 1)).astype(dtype)
    np.testing.assert_array_equal(M.across(a, c), a * c)
    np.testing.assert_array_equal(M.turned(a), np.transpose(a, (1, 0, 2, 3)) * 3)


def test_integers_bools_and_empty_arrays():
    i = np.arange(24).reshape(2, 3, 4)
    np.testing.assert_array_equal(M.counts(i, i), i * i + 1)
    big = np.full((2, 2), np.iinfo(np.int64).min)
    np.testing.assert_array_equal(M.counts(big, np.ones((2, 2), np.int64)), big + 1)
    empty = np.zeros((3, 0, 2))
    assert M.chain(empty, empty).shape == (3, 0, 2)
    assert M.picked(empty, empty).shape == (3, 0, 2)


def test_gradient():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 3, 3)), rng.standard_normal((4, 3, 3))
    ga, gb = diffc.grad(M.loss, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, np.cos(a * b) * b * a + np.sin(a * b), rtol=1e-13)
    np.testing.assert_allclose(gb, np.cos(a * b) * a * a, rtol=1e-13)


def test_split_among_threads_as_on_one():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((64, 16, 16, 9)), rng.standard_normal((64, 16, 16, 9))
    results = on_each_count(lambda: M.chain(a, b))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    np.testing.assert_allclose(results[0], np.exp(a * b + 1) - a, rtol=1e-13, atol=1e-15)

"""The cotangent of `windows` adds each window's cotangent at its place (unwindows, prims/
shape.py): in blocks of the result, a pass per place in the window, the last first, so that
every element adds its terms in the windows' order, as NumPy's np.add.at does: the same bits.
Sizes around the blocks, windows of one element and of the whole array, a trailing axis,
rows wider than a block, NaN and inf, 1 to 3 threads."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc.prims.shape import UNWINDOWS_BLOCK_BYTES

SRC = """
fn dot(x, c, k: i64) = sum(map(fn(w) => sum(w * c), windows(x, k)))
fn rows(x, c, k: i64) = sum(map(fn(w) => sum(w * c), windows(x, k)))
"""


def unwindows(g):
    """out[i + j] += g[i, j] for the windows i in order."""
    rows, k = g.shape[:2]
    out = np.zeros((rows + k - 1,) + g.shape[2:], g.dtype)
    for i in range(rows):
        out[i : i + k] += g[i]
    return out


@pytest.mark.parametrize("k", [1, 2, 4, 9])
@pytest.mark.parametrize("n_rows", [1, 3, UNWINDOWS_BLOCK_BYTES // 8 // 4 + 1, 3000])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_and_bits(k, n_rows, dtype):
    m = diffc.compile(SRC)
    rng = np.random.default_rng(k * n_rows)
    n = n_rows + k - 1
    x = rng.standard_normal(n).astype(dtype)
    c = rng.standard_normal(k).astype(dtype)
    if k > 1:
        c[0], c[-1] = np.inf, np.nan
    grad = diffc.grad(m.dot, argnums=0)(x, c, k)
    want = unwindows(np.broadcast_to(c, (n_rows, k)))
    np.testing.assert_array_equal(grad, want)


def test_windows_of_rows_and_the_whole_array():
    m = diffc.compile(SRC)
    rng = np.random.default_rng(1)
    x, c = rng.standard_normal((700, 3)), rng.standard_normal((5, 3))
    np.testing.assert_array_equal(diffc.grad(m.rows, argnums=0)(x, c, 5), unwindows(np.broadcast_to(c, (696, 5, 3))))
    whole = rng.standard_normal(6)
    np.testing.assert_array_equal(diffc.grad(m.dot, argnums=0)(whole, whole, 6), whole)


def test_blocks_of_one_wide_row_and_the_threads():
    """Rows of 4096 elements: a block of one row each (the first k - 1 blocks partly held by no
    window's first place), enough work for the threads: the same bits as NumPy's on 1, 2, 3."""
    m = diffc.compile(SRC + "fn tied(x, c) = sum(map(fn(w) => sum(sum(w * c, axis=1) * 0.5), windows(x, 5)))\n")
    rng = np.random.default_rng(2)
    x, c = rng.standard_normal((40, 4096)), rng.standard_normal((5, 4096))
    c[1, :3] = np.nan, np.inf, -0.0
    assert UNWINDOWS_BLOCK_BYTES // (4096 * 8) <= 1
    results = on_each_count(lambda: diffc.grad(m.rows, argnums=0)(x, c, 5))
    want = unwindows(np.broadcast_to(c, (36, 5, 4096)))
    for r in results:
        np.testing.assert_array_equal(r, want)
    halves = on_each_count(lambda: diffc.grad(m.tied, argnums=0)(x, c))
    for r in halves:
        np.testing.assert_array_equal(r, unwindows(np.broadcast_to(c * 0.5, (36, 5, 4096))))

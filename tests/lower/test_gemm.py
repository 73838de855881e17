"""The generated matrix-product kernel (lower/gemm.py) against NumPy, on shapes that take
every kind of tile (full tiles, one-vector tiles, a masked vector, single rows), with A of any
strides and B transposed (copied to contiguous rows first)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import diffc
from diffc.lower import gemm
from diffc.prims import linalg

SRC = """
fn mm(a, b) = a @ b
fn mm_ta(a, b) = transpose(a) @ b
fn mm_tb(a, b) = a @ transpose(b)
fn mm_slice(a, b) = a[1:, 1:] @ b[:, 1:]
fn batched(a, b) = map(fn(x) => x @ b, a)
fn mm_tt(a, b) = transpose(a) @ transpose(b)
"""
W = gemm.tile()[0] // 8  # doubles per vector
MR, NV = gemm.tile()[1:]
SHAPES = [
    (MR, 64, NV * W),  # one full tile
    (2 * MR + 3, 37, 2 * NV * W + W + 3),  # full tiles, a vector tile, a masked vector, single rows
    (5, 200, 3),  # fewer columns than a vector, fewer rows than a tile
    (1, 4096 // 1, 9),  # K beyond GEMM_MAX_K: OpenBLAS
    (33, 1, 17),  # K = 1
]


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_products_match_numpy(m, shape, dtype):
    rows, k, cols = shape
    if rows * k * cols < linalg.BLAS_MIN_WORK:
        k = k * (linalg.BLAS_MIN_WORK // (rows * k * cols) + 1)  # (smaller ones are plain loops)
    rng = np.random.default_rng(sum(shape))
    a, b = rng.standard_normal((rows, k)).astype(dtype), rng.standard_normal((k, cols)).astype(dtype)
    tol = dict(rtol=1e-12, atol=1e-12 * k) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5 * k)
    np.testing.assert_allclose(m.mm(a, b), a @ b, **tol)
    np.testing.assert_allclose(m.mm_ta(np.ascontiguousarray(a.T), b), a @ b, **tol)
    np.testing.assert_allclose(m.mm_tb(a, np.ascontiguousarray(b.T)), a @ b, **tol)
    a2 = rng.standard_normal((rows + 1, k + 1)).astype(dtype)
    b2 = rng.standard_normal((k, cols + 1)).astype(dtype)
    np.testing.assert_allclose(m.mm_slice(a2, b2), a2[1:, 1:] @ b2[:, 1:], **tol)


def test_products_computed_into_a_maps_rows(m):
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((3, 40, 50)), rng.standard_normal((50, 30))
    np.testing.assert_allclose(m.batched(a, b), a @ b, rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 300),
    st.integers(1, 70),
    st.booleans(),
    st.booleans(),
    st.sampled_from([np.float64, np.float32]),
)
def test_any_shape_and_layout_matches_numpy(m, rows, k, cols, a_transposed, b_transposed, dtype):
    """Every tile and edge path on random shapes (products too small for the kernel take the
    plain loops, which must agree as well)."""
    rng = np.random.default_rng(rows * 7919 + k * 31 + cols)
    a = rng.standard_normal((rows, k)).astype(dtype)
    b = rng.standard_normal((k, cols)).astype(dtype)
    fn, x, y = m.mm, a, b
    if a_transposed and b_transposed:
        fn, x, y = m.mm_tt, np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    elif a_transposed:
        fn, x = m.mm_ta, np.ascontiguousarray(a.T)
    elif b_transposed:
        fn, y = m.mm_tb, np.ascontiguousarray(b.T)
    tol = dict(rtol=1e-12, atol=1e-12 * k) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5 * k)
    np.testing.assert_allclose(fn(x, y), a @ b, **tol)

"""Vector-matrix and matrix-vector products, whichever side the vector is on and whichever way
the matrix is stored (a transpose is a view), as a vector or as a matrix of one row or one
column: values against NumPy at sizes below and above the call thresholds, empty ones, NaN
and infinities, and their derivatives."""

import numpy as np
import pytest
from support.native import ir_of

import diffc
from diffc.lower.llvm import lower_program

SRC = """
fn vm(v, m) = v @ m
fn mv(m, v) = m @ v
fn tmv(m, v) = transpose(m) @ v
fn vtm(v, m) = v @ transpose(m)
fn row_m(v, m) = reshape(v, [1, -1]) @ m
fn m_col(m, v) = m @ reshape(v, [-1, 1])
fn row_tm(v, m) = reshape(v, [1, -1]) @ transpose(m)
fn tm_col(m, v) = transpose(m) @ reshape(v, [-1, 1])
fn loss_vm(v, m) = sum(tanh(v @ m))
fn loss_tmv(m, v) = sum(tanh(transpose(m) @ v))
fn loss_row(v, m) = sum(tanh(reshape(v, [1, -1]) @ m))
fn loss_col(m, v) = sum(tanh(transpose(m) @ reshape(v, [-1, 1])))
"""

# (rows, cols) of the stored matrix: empty, one, below and above the threshold of a call
SHAPES = [(0, 5), (5, 0), (1, 1), (1, 300), (300, 1), (7, 9), (64, 64), (130, 70), (70, 130)]


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def _expected(name, mat, v):
    """NumPy's product, the vector on the side the function puts it."""
    flat = {
        "vm": lambda: v @ mat,
        "mv": lambda: mat @ v,
        "tmv": lambda: mat.T @ v,
        "vtm": lambda: v @ mat.T,
        "row_m": lambda: v[None] @ mat,
        "m_col": lambda: mat @ v[:, None],
        "row_tm": lambda: v[None] @ mat.T,
        "tm_col": lambda: mat.T @ v[:, None],
    }
    return flat[name]()


# the side of the stored matrix the vector multiplies: its rows (v @ m) or its columns (m @ v)
ALONG_ROWS = ("vm", "tmv", "row_m", "tm_col")
ALONG_COLS = ("mv", "vtm", "m_col", "row_tm")


def _args(name, mat, v):
    return (v, mat) if name in ("vm", "vtm", "row_m", "row_tm") else (mat, v)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ALONG_ROWS + ALONG_COLS)
def test_every_orientation_matches_numpy(m, name, shape, dtype):
    rng = np.random.default_rng(0)
    mat = rng.standard_normal(shape).astype(dtype)
    v = rng.standard_normal(shape[0] if name in ALONG_ROWS else shape[1]).astype(dtype)
    got = getattr(m, name)(*_args(name, mat, v))
    want = _expected(name, mat, v)
    assert got.shape == want.shape and got.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [7, 200])
@pytest.mark.parametrize("name", ALONG_ROWS + ALONG_COLS)
def test_nan_and_infinity_propagate_as_in_the_sum_of_products(m, name, n):
    """0 * inf in a term is NaN (no term is skipped for a zero factor), inf + -inf is NaN,
    and an inf that meets only finite factors stays inf."""
    mat = np.ones((n, n))
    v = np.ones(n)
    v[1] = 0.0
    mat[1, 2] = mat[2, 1] = np.inf  # each meets the zero of v in one orientation
    mat[3, 4] = mat[4, 3] = np.inf
    mat[3, 5] = mat[5, 3] = -np.inf
    mat[6, 0] = mat[0, 6] = np.nan
    got = np.ravel(getattr(m, name)(*_args(name, mat, v)))
    stored = mat if name in ALONG_ROWS else mat.T
    if name in ("tmv", "tm_col", "vtm", "row_tm"):
        stored = stored.T
    with np.errstate(invalid="ignore"):
        want = (v[:, None] * stored).sum(axis=0)  # every term, summed without a BLAS
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n", [9, 150])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradients_of_every_orientation(m, n, dtype):
    rng = np.random.default_rng(1)
    mat = rng.standard_normal((n, n + 3)).astype(dtype) / n
    v = rng.standard_normal(n).astype(dtype)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5)

    d = 1 - np.tanh(v @ mat) ** 2  # loss_vm, loss_row: v along the rows of mat
    for name in ("loss_vm", "loss_row"):
        gv, gm = diffc.grad(getattr(m, name), (0, 1))(v, mat)
        np.testing.assert_allclose(gv, mat @ d, **tol)
        np.testing.assert_allclose(gm, np.outer(v, d), **tol)
    for name in ("loss_tmv", "loss_col"):  # transpose(mat) @ v = v @ mat
        gm, gv = diffc.grad(getattr(m, name), (0, 1))(mat, v)
        np.testing.assert_allclose(gv, mat @ d, **tol)
        np.testing.assert_allclose(gm, np.outer(v, d), **tol)
    # forward mode: the derivative along (dv, dm)
    dv = rng.standard_normal(n).astype(dtype)
    dm = rng.standard_normal(mat.shape).astype(dtype)
    _, jv = diffc.jvp(m.loss_vm)(v, mat, dv, dm)
    np.testing.assert_allclose(jv, d @ (dv @ mat + v @ dm), **tol)


def test_gradients_against_finite_differences(m):
    rng = np.random.default_rng(2)
    mat, v = rng.standard_normal((40, 300)) / 20, rng.standard_normal(40)
    gv, gm = diffc.grad(m.loss_row, (0, 1))(v, mat)
    eps = 1e-6
    for i, j in [(0, 0), (3, 299), (39, 150)]:
        e = np.zeros_like(mat)
        e[i, j] = eps
        fd = (m.loss_row(v, mat + e) - m.loss_row(v, mat - e)) / (2 * eps)
        np.testing.assert_allclose(gm[i, j], fd, rtol=1e-6, atol=1e-9)
    e = np.zeros_like(v)
    e[7] = eps
    np.testing.assert_allclose(gv[7], (m.loss_row(v + e, mat) - m.loss_row(v - e, mat)) / (2 * eps), rtol=1e-6)


MM = """
fn nn(a, b) = a @ b
fn tn(a, b) = transpose(a) @ b
fn nt(a, b) = a @ transpose(b)
fn tt(a, b) = transpose(a) @ transpose(b)
"""


@pytest.mark.parametrize(
    "mkn", [(0, 3, 4), (3, 0, 4), (3, 4, 0), (1, 1, 1), (2, 1, 3), (7, 9, 5), (16, 40, 12)], ids=str
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_small_products_of_views_stored_by_rows_or_columns(mkn, dtype):
    """The loops pick their order from the operands' layouts (a transpose is stored by
    columns); with both stored by columns they compute the transposed product."""
    mm = diffc.compile(MM)
    rng = np.random.default_rng(3)
    m_, k, n = mkn
    a, b = rng.standard_normal((m_, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for got in (mm.nn(a, b), mm.tn(at, b), mm.nt(a, bt), mm.tt(at, bt)):
        assert got.shape == (m_, n) and got.dtype == dtype
        np.testing.assert_allclose(got, a @ b, rtol=tol, atol=tol)
    with np.errstate(invalid="ignore"):  # 0 * inf in a term: NaN, whatever the loop order
        a[:, :1], b[:1, :] = 0.0, np.inf
        want = (a[:, :, None] * b[None, :, :]).sum(axis=1)
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    for got in (mm.nn(a, b), mm.tn(at, b), mm.nt(a, bt), mm.tt(at, bt)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("sa, sb", [((1, 512), (512, 512)), ((512, 512), (512, 1))], ids=str)
def test_a_matrix_of_one_row_or_column_is_a_matrix_vector_product(sa, sb):
    """Not the tiled kernel, whose tiles of one row would each walk down all of b's rows."""
    from diffc.lower import jit

    if not jit.blas_available():
        pytest.skip("OpenBLAS is not loaded")
    prog = ir_of(diffc.compile("fn f(a, b) = a @ b"), "f", np.ones(sa), np.ones(sb))
    text = str(lower_program(prog).module)
    assert "dgemv" in text and "diffc_gemm" not in text


@pytest.mark.parametrize("m_", [1, 3, 16, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kernel_products_with_b_transposed_and_few_rows(m_, dtype):
    """g @ transpose(W) (the derivative of x @ W): computed as (W @ g^T)^T, W read in place."""
    mm = diffc.compile(MM)
    rng = np.random.default_rng(4)
    a, w = rng.standard_normal((m_, 200)).astype(dtype), rng.standard_normal((130, 200)).astype(dtype)
    a[0, 5], w[7, 5], w[9, 6] = 0.0, np.inf, np.nan
    with np.errstate(invalid="ignore"):
        want = (a[:, None, :] * w[None, :, :]).sum(axis=2)
    tol = 1e-11 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(mm.nt(a, w), want, rtol=tol, atol=tol)
    np.testing.assert_allclose(mm.tt(np.ascontiguousarray(a.T), w), want, rtol=tol, atol=tol)


def test_rnn_gradient_with_a_batch_of_rows():
    """The backward pass of x @ W over a batch multiplies by transpose(W) at every step."""
    f = diffc.compile("fn f(W, xs, h0) { let h = fold(fn(h, x) => tanh(x @ W + h @ W), h0, xs); sum(h * h) }")
    rng = np.random.default_rng(5)
    w, xs, h0 = rng.standard_normal((96, 96)) / 10, rng.standard_normal((4, 16, 96)), rng.standard_normal((16, 96))
    gw, gxs = diffc.grad(f.f, (0, 1))(w, xs, h0)

    hs = [h0]
    for x in xs:
        hs.append(np.tanh(x @ w + hs[-1] @ w))
    g, want_w, want_xs = 2 * hs[-1], np.zeros_like(w), np.zeros_like(xs)
    for t in range(len(xs) - 1, -1, -1):
        d = g * (1 - hs[t + 1] ** 2)
        want_w += xs[t].T @ d + hs[t].T @ d
        want_xs[t] = d @ w.T
        g = d @ w.T
    np.testing.assert_allclose(gw, want_w, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gxs, want_xs, rtol=1e-10, atol=1e-10)


def test_integer_products_of_views_stored_by_rows_or_columns():
    dtype = np.int64
    mm = diffc.compile(MM + "fn tv(a, v) = transpose(a) @ v\nfn vt(v, a) = v @ transpose(a)")
    rng = np.random.default_rng(6)
    a, b = rng.integers(-5, 5, (7, 9)).astype(dtype), rng.integers(-5, 5, (9, 4)).astype(dtype)
    v, w = rng.integers(-5, 5, 7).astype(dtype), rng.integers(-5, 5, 9).astype(dtype)
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    for got in (mm.nn(a, b), mm.tn(at, b), mm.nt(a, bt), mm.tt(at, bt)):
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, a @ b)
    np.testing.assert_array_equal(mm.tv(a, v), a.T @ v)
    np.testing.assert_array_equal(mm.vt(w, a), w @ a.T)

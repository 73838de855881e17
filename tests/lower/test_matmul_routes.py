"""Each route a float matrix product can take (prims/linalg.py, See Note [Kernel or BLAS]):
plain loops below BLAS_MIN_WORK, the generated kernel above at every size, in pieces on the
threads when large, along the inner dimension for a long sum; a matrix of one row or column
is OpenBLAS's gemv. Transposed and strided operands, batches, empty axes. Each test checks
the route in the lowered code, then the values against NumPy (and the bits on 1, 2 and 3
threads)."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.native import ir_of, on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc.lower import gemm
from diffc.lower.llvm import lower_program
from diffc.prims import linalg

SRC = """
fn mm(a, b) = a @ b
fn mm_ta(a, b) = transpose(a) @ b
fn mm_tb(a, b) = a @ transpose(b)
fn mm_tt(a, b) = transpose(a) @ transpose(b)
fn mm_rows2(a, b) = a[::2] @ b
fn mm_cols(a, b) = a[:, 1:] @ b
fn mm_cols2(a, b) = a @ b[:, ::2]
fn mm_bt(a, b) = a @ transpose(b, [0, 2, 1])
fn loss_tb(a, b) = sum((a @ transpose(b)) ** 2)
fn loss_ta(a, b) = sum((transpose(a) @ b) ** 2)
fn prod_t(a, g) = transpose(transpose(a) @ g)
fn prod_t_and_prod(a, g) {
    let p = transpose(a) @ g;
    (transpose(p), p)
}
fn prod_t_rows(a, g) = map(fn(x) => transpose(transpose(x) @ g), a)
"""
DTYPES = [np.float64, np.float32]
# the products called large: both operands beyond a 2 MiB L2 in f32, the result cut into
# pieces of rows on the threads (See Note [Products on threads]), the last piece shorter
K = 2048
WIDE = 257
assert WIDE * K * 4 > 2 << 20 and WIDE * WIDE * K >= linalg.PARALLEL_PRODUCT


# function: (NumPy's expression, the operands' shapes for an (m, k, n) product)
LAYOUTS = {
    "mm": (lambda a, b: a @ b, lambda m, k, n: ((m, k), (k, n))),
    "mm_ta": (lambda a, b: a.T @ b, lambda m, k, n: ((k, m), (k, n))),
    "mm_tb": (lambda a, b: a @ b.T, lambda m, k, n: ((m, k), (n, k))),
    "mm_tt": (lambda a, b: a.T @ b.T, lambda m, k, n: ((k, m), (n, k))),
    "mm_rows2": (lambda a, b: a[::2] @ b, lambda m, k, n: ((2 * m, k), (k, n))),
    "mm_cols": (lambda a, b: a[:, 1:] @ b, lambda m, k, n: ((m, k + 1), (k, n))),
    "mm_cols2": (lambda a, b: a @ b[:, ::2], lambda m, k, n: ((m, k), (k, 2 * n))),
}


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def lowered(m, fn: str, *args) -> str:
    return str(lower_program(ir_of(m, fn, *args)).module)


def route(text: str) -> str:
    assert "gemm64_" not in text  # (OpenBLAS computes matrix-vector products only)
    if re.search(r"call void @\"diffc_gemm2_f(32|64)\"", text):
        return "kernel"
    return "loops"


def operands(dtype, *shapes, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def close(dtype, k: int):
    return dict(rtol=1e-12, atol=1e-12 * k) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5 * k)


def check(m, fn: str, dtype, mkn, want_route: str):
    """The route of fn on an (m, k, n) product in dtype, and its value against NumPy's."""
    expr, shapes = LAYOUTS[fn]
    a, b = operands(dtype, *shapes(*mkn))
    assert route(lowered(m, fn, a, b)) == want_route
    np.testing.assert_allclose(getattr(m, fn)(a, b), expr(a, b), **close(dtype, mkn[1]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", LAYOUTS)
def test_small_products_are_loops(m, fn, dtype):
    check(m, fn, dtype, (7, 9, linalg.BLAS_MIN_WORK // 63 - 1), "loops")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", LAYOUTS)
def test_products_run_the_kernel(m, fn, dtype):
    _, mr, nv = gemm.tile()
    check(m, fn, dtype, (2 * mr + 3, 70, 3 * nv * 8 + 5), "kernel")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", LAYOUTS)
def test_large_products_run_the_kernel_in_pieces_with_the_same_bits_on_any_threads(m, fn, dtype):
    """Both operands beyond L2 (OpenBLAS's route once, See Note [Kernel or BLAS]): the kernel,
    in pieces of rows on the threads; the same bits on 1, 2 and 3 threads, NumPy's values."""
    expr, shapes = LAYOUTS[fn]
    a, b = operands(dtype, *shapes(WIDE, K, WIDE + 2))
    text = lowered(m, fn, a, b)
    assert route(text) == "kernel" and "mm.par:" in text
    results = on_each_count(lambda: getattr(m, fn)(a, b))
    assert all(np.array_equal(r, results[0]) for r in results[1:])
    np.testing.assert_allclose(results[0], expr(a, b), **close(dtype, K))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", LAYOUTS)
def test_a_tall_a_times_a_b_that_fits_runs_the_kernel(m, fn, dtype):
    """An A beyond the cache times a B within it (im2col's columns times a convolution's
    weights) runs the kernel, transposed views included; the same bits on 1, 2 and 3 threads
    (blocks of rows), NumPy's values, NaN and inf where it has them."""
    rows = 4 * WIDE + 5  # several blocks of rows, the last shorter
    expr, shapes = LAYOUTS[fn]
    for n in (3, WIDE):
        a, b = operands(dtype, *shapes(rows, K, n))
        a[(0, -1), (3, -1)] = np.nan, np.inf
        assert route(lowered(m, fn, a, b)) == "kernel"
        results = on_each_count(lambda: getattr(m, fn)(a, b))
        assert all(np.array_equal(r, results[0], equal_nan=True) for r in results[1:])
        np.testing.assert_allclose(results[0], expr(a, b), **close(dtype, K))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_batched_products_take_the_route_of_one_matrix(m, size, dtype):
    mr = 2 * gemm.tile()[1] + 1 if size == "small" else WIDE
    a, b = operands(dtype, (2, mr, K), (2, K, WIDE))
    bt = np.ascontiguousarray(np.swapaxes(b, 1, 2))
    for fn, y in (("mm", b), ("mm_bt", bt)):
        assert route(lowered(m, fn, a, y)) == "kernel"
        np.testing.assert_allclose(getattr(m, fn)(a, y), a @ b, **close(dtype, K))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", [((0, K), (K, 9)), ((9, K), (K, 0)), ((9, 0), (0, 9)), ((2, 0, 5), (2, 5, 3))])
def test_empty_axes(m, shapes, dtype):
    a, b = operands(dtype, *shapes)
    got = m.mm(a, b)
    assert got.shape == (a @ b).shape
    np.testing.assert_array_equal(got, a @ b)  # (zeros when the inner dimension is empty)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["mm", "mm_ta", "mm_tb"])
def test_one_row_or_one_column_at_sizes_beyond_the_kernel(m, fn, dtype):
    """A matrix of one row or one column is a matrix-vector product (OpenBLAS's gemv)."""
    expr, shapes = LAYOUTS[fn]
    rows = WIDE
    for mkn in ((1, K, rows), (rows, K, 1)):
        a, b = operands(dtype, *shapes(*mkn))
        assert "gemv64_" in lowered(m, fn, a, b)
        np.testing.assert_allclose(getattr(m, fn)(a, b), expr(a, b), **close(dtype, K))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_nan_and_infinity_propagate(m, size, dtype):
    rows = 2 * gemm.tile()[1] + 1 if size == "small" else WIDE
    a, b = operands(dtype, (rows, K), (K, WIDE))
    a[1, 3], a[2, 5], b[5, :] = np.nan, np.inf, 0.0  # row 1 NaN; row 2: inf * 0 is NaN too
    with np.errstate(invalid="ignore"):
        want = a @ b
    got = m.mm(a, b)
    assert route(lowered(m, "mm", a, b)) == "kernel"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[3:], want[3:], **close(dtype, K))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_gradients_of_transposed_products(m, size, dtype):
    """value_and_grad of sum((a @ b^T)^2) and sum((a^T @ b)^2), whose derivatives multiply
    by transposes, against the closed forms in NumPy."""
    mr, n = (40, 30) if size == "small" else (WIDE, WIDE + 2)
    a, b = operands(dtype, (mr, K), (n, K))
    c = a @ b.T
    (value, (ga, gb)) = diffc.value_and_grad(m.loss_tb, argnums=(0, 1))(a, b)
    tol = close(dtype, K * n)
    np.testing.assert_allclose(value, (c * c).sum(), rtol=1e-10 if dtype == np.float64 else 1e-4)
    np.testing.assert_allclose(ga, 2 * c @ b, **tol)
    np.testing.assert_allclose(gb, 2 * c.T @ a, **tol)
    a, b = operands(dtype, (K, mr), (K, n))
    c = a.T @ b
    (value, (ga, gb)) = diffc.value_and_grad(m.loss_ta, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(value, (c * c).sum(), rtol=1e-10 if dtype == np.float64 else 1e-4)
    np.testing.assert_allclose(ga, 2 * b @ c.T, **tol)
    np.testing.assert_allclose(gb, 2 * a @ c, **tol)


def main_function(text: str) -> str:
    return text[text.index('define internal void @"dfl.main"') :].split("\n}\n")[0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", ["loops", "kernel", "large"])
def test_a_product_returned_transposed_is_computed_into_the_output(m, where, dtype):
    """transpose(transpose(a) @ g), the derivative of a @ transpose(b) for b, is computed as
    transpose(g) @ a straight into the output: no copy loop after the product (See Note
    [Transposed destinations])."""
    # computed as transpose(g) @ a: g's columns are the rows of the product's A
    k, cols, n = {"loops": (64, 3, 5), "kernel": (64, 40, 30), "large": (K, WIDE, WIDE + 2)}[where]
    a, g = operands(dtype, (k, n), (k, cols))
    text = lowered(m, "prod_t", a, g)
    assert route(text) == ("kernel" if where == "large" else where)
    if where != "loops":
        assert ".head:" not in main_function(text)
    np.testing.assert_allclose(m.prod_t(a, g), (a.T @ g).T, **close(dtype, k))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_product_read_also_untransposed_or_in_a_map(m, dtype):
    a, g = operands(dtype, (K, 40), (K, 30))
    got_t, got = m.prod_t_and_prod(a, g)
    np.testing.assert_allclose(got_t, (a.T @ g).T, **close(dtype, K))
    np.testing.assert_allclose(got, a.T @ g, **close(dtype, K))
    batch = operands(dtype, (3, K, 40))[0]
    want = np.transpose(np.swapaxes(batch, 1, 2) @ g, (0, 2, 1))
    np.testing.assert_allclose(m.prod_t_rows(batch, g), want, **close(dtype, K))


def _long_sum(m_rows: int, n: int) -> int:
    """An inner dimension that cuts an (m_rows, ., n) product along it, in pieces of unequal
    length (the last shorter)."""
    least_work = linalg.PARALLEL_PRODUCT // (m_rows * n) + 1
    return max(linalg.INNER_RATIO * max(m_rows, n), least_work, 3 * linalg.INNER_PIECE) + 3


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn", ["mm", "mm_ta", "mm_tb", "mm_tt", "mm_rows2"])
def test_a_small_result_of_a_long_sum_is_cut_along_the_sum(m, fn, dtype):
    """A weight's gradient over a large batch (See Note [Products on threads]): pieces of the
    inner dimension on the threads, added in order; the same bits on 1, 2 and 3 threads."""
    mkn = (72, _long_sum(72, 32), 32)
    assert linalg._inner_pieces(72, 32, mkn[1]) > 1
    expr, shapes = LAYOUTS[fn]
    a, b = operands(dtype, *shapes(*mkn))
    text = lowered(m, fn, a, b)
    assert route(text) == "kernel" and "mmk.par:" in text and "mmsum" in text
    results = on_each_count(lambda: getattr(m, fn)(a, b))
    assert all(np.array_equal(r, results[0]) for r in results[1:])
    np.testing.assert_allclose(results[0], expr(a, b), **close(dtype, mkn[1]))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_long_sum_with_nan_and_infinity_and_a_short_one_not_cut(m, dtype):
    a, b = operands(dtype, (8, _long_sum(8, 8)), (_long_sum(8, 8), 8))
    a[2, 5], a[3, -1], b[-1, 4] = np.nan, np.inf, -np.inf  # (in the first piece and the last)
    np.testing.assert_allclose(m.mm(a, b), a @ b, **close(dtype, a.shape[1]))  # NaN and inf where NumPy has them
    assert linalg._inner_pieces(8, 8, _long_sum(8, 8)) > 1
    assert linalg._inner_pieces(64, 64, linalg.INNER_RATIO * 64 - 1) == 1
    assert linalg._inner_pieces(8, 8, 4 * linalg.INNER_PIECE) == 1  # (too little work to split)


@settings(max_examples=12, deadline=None)
@given(
    rows=st.integers(1, 80),
    cols=st.integers(1, 80),
    extra=st.integers(0, 3 * linalg.INNER_PIECE),
    fn=st.sampled_from(["mm", "mm_ta", "mm_tb", "mm_tt"]),
    f32=st.booleans(),
)
def test_generated_long_sums_agree_with_numpy_on_every_count_of_threads(m, rows, cols, extra, fn, f32):
    """Products of any small shape and a long sum: cut along the sum whenever _inner_pieces says
    so, the same bits on 1, 2 and 3 threads, NumPy's values."""
    dtype = np.float32 if f32 else np.float64
    k = _long_sum(rows, cols) + extra
    expr, shapes = LAYOUTS[fn]
    a, b = operands(dtype, *shapes(rows, k, cols), seed=rows * 100 + cols)
    results = on_each_count(lambda: getattr(m, fn)(a, b))
    assert all(np.array_equal(r, results[0]) for r in results[1:])
    np.testing.assert_allclose(results[0], expr(a, b), **close(dtype, k))


BATCHES = [((8, 4, 64, 32), (8, 4, 32, 64)), ((6, 5, 64, 24), (24, 64)), ((4100, 8, 8), (4100, 8, 8))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shapes", BATCHES)
def test_a_batch_of_small_products_runs_on_the_threads(m, shapes, dtype):
    """Products each too small to split, but many (attention's scores per batch and head): the
    batch's matrices on the threads (See Note [Batched products]), the same bits on 1, 2 and 3
    threads, NumPy's values; a batch of one product does not take that route."""
    a, b = operands(dtype, *shapes)
    a[0, 0, 1] = np.nan
    assert "mb.par:" in lowered(m, "mm", a, b)
    results = on_each_count(lambda: m.mm(a, b))
    assert all(np.array_equal(r, results[0], equal_nan=True) for r in results[1:])
    np.testing.assert_allclose(results[0], a @ b, **close(dtype, shapes[1][-2]))
    assert "mb.par:" not in lowered(m, "mm", a[:1], b[:1] if b.ndim == a.ndim else b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", ["small", "large"])
def test_a_batch_of_transposed_matrices_is_read_in_place(m, size, dtype):
    """a @ transpose(b, [0, 2, 1]) (attention's scores, a convolution's weight gradient): each
    matrix of b is read by columns where it is (the kernel packs it from its columns), not the
    whole of b copied before the loop; NumPy's values on 1, 2 and 3 threads."""
    mr = 2 * gemm.tile()[1] + 1 if size == "small" else WIDE
    a, b = operands(dtype, (3, mr, K), (3, WIDE, K))
    text = lowered(m, "mm_bt", a, b)
    assert route(text) == "kernel"
    results = on_each_count(lambda: m.mm_bt(a, b))
    assert all(np.array_equal(r, results[0]) for r in results[1:])
    np.testing.assert_allclose(results[0], a @ np.swapaxes(b, 1, 2), **close(dtype, K))

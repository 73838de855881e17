"""The generated matrix-product kernel (lower/gemm.py) against NumPy, on shapes that take
every kind of tile (full tiles, one-vector tiles, a masked vector, single rows), with A of any
strides and B of any strides (a transposed B packed from its columns)."""

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llvmlite import ir
from support.native import ir_of

import diffc
from diffc.lower import gemm
from diffc.lower.llvm import lower_program
from diffc.prims import linalg

SRC = """
fn mm(a, b) = a @ b
fn mm_ta(a, b) = transpose(a) @ b
fn mm_tb(a, b) = a @ transpose(b)
fn mm_slice(a, b) = a[1:, 1:] @ b[:, 1:]
fn batched(a, b) = map(fn(x) => x @ b, a)
fn mm_tt(a, b) = transpose(a) @ transpose(b)
fn mm_rows2(a, b) = a[::2] @ b
fn mm_cols2(a, b) = a @ b[:, ::2]
"""
W = gemm.tile()[0] // 8  # doubles per vector
MR, NV = gemm.tile()[1:]
SHAPES = [
    (MR, 64, NV * W),  # one full tile
    (2 * MR + 3, 37, 2 * NV * W + W + 3),  # full tiles, a vector tile, a masked vector, single rows
    (MR + 1, 50, NV * W + 2 * W + 3),  # a full tile, a tile of two vectors, a masked vector
    (5, 200, 3),  # fewer columns than a vector, fewer rows than a tile
    (1, 9000, 9),  # one row: a matrix-vector product (OpenBLAS's gemv)
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


# Packing (See Note [Packing] in lower/gemm.py): sizes one below, at and past the edges of the
# tiles (MR rows, NV vectors, one vector) and of the packed blocks (KC terms, NC columns, MC
# rows), for this machine's blocks. Small integers make every sum exact, so the product must
# equal NumPy's to the bit: an element packed in the wrong place, or a block's terms added
# twice or not at all, shows.
KC, NC, MC = gemm.blocking(8)
PACKED = [
    (MR, KC, NV * W),
    (MR + 1, KC + 1, NV * W + 1),
    (MC - 1, 2 * KC + 3, NC + W + 3),
    (MC + MR + 3, KC - 1, NC - 1),
    (2 * MC + 1, 5, 2 * NC + NV * W + W - 1),
    (3, KC + 7, 2 * NC + 5),
]


def _small_integers(rng, shape, dtype):
    return rng.integers(-3, 4, size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", PACKED, ids=lambda s: "x".join(map(str, s)))
def test_packed_blocks_are_exact(m, shape, dtype):
    rows, k, cols = shape
    rng = np.random.default_rng(rows + k + cols)
    a, b = _small_integers(rng, (rows, k), dtype), _small_integers(rng, (k, cols), dtype)
    want = a @ b
    np.testing.assert_array_equal(m.mm(a, b), want)
    np.testing.assert_array_equal(m.mm_ta(np.ascontiguousarray(a.T), b), want)  # A packed by columns
    np.testing.assert_array_equal(m.mm_tb(a, np.ascontiguousarray(b.T)), want)
    a2 = _small_integers(rng, (2 * rows, k), dtype)
    np.testing.assert_array_equal(m.mm_rows2(a2, b), a2[::2] @ b)  # A's rows 2k apart
    a3, b3 = _small_integers(rng, (rows + 1, k + 1), dtype), _small_integers(rng, (k, cols + 1), dtype)
    np.testing.assert_array_equal(m.mm_slice(a3, b3), a3[1:, 1:] @ b3[:, 1:])  # leading dimensions


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_transposed_a_is_read_in_place_or_packed_by_its_step(m, dtype):
    """A transposed A whose columns are at most PACK_A_STEP_BYTES apart is read in place, one of
    more rows is packed; between PACK_A_NEAR_BYTES and it, packed when B has PACK_A_COLUMNS
    columns or more and a panel's column is less than a line (See Note [Packing]): all exact,
    over several blocks of terms and every kind of tile, single rows included."""
    itemsize = np.dtype(dtype).itemsize
    kc = gemm.blocking(itemsize)[0]
    rng = np.random.default_rng(11)
    near, step = gemm.PACK_A_NEAR_BYTES // itemsize, gemm.PACK_A_STEP_BYTES // itemsize
    for rows in (near, near + MR + 1, step, step + MR + 1):
        for cols in (gemm.PACK_A_COLUMNS - 1, gemm.PACK_A_COLUMNS + 2 * W + 3):
            k = 2 * kc + 5
            at, b = _small_integers(rng, (k, rows), dtype), _small_integers(rng, (k, cols), dtype)
            np.testing.assert_array_equal(m.mm_ta(at, b), at.T @ b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packed_blocks_keep_nan_and_inf_in_place(m, dtype):
    """An inf of A in one row and term, a NaN of B in one term and column, a zero times inf:
    each reaches exactly the elements of C it is a term of, across the blocks' edges."""
    rows, k, cols = MC + 3, 2 * KC + 1, NC + W + 1
    rng = np.random.default_rng(5)
    a, b = _small_integers(rng, (rows, k), dtype), _small_integers(rng, (k, cols), dtype)
    a[MR + 1, KC] = np.inf
    a[rows - 1, k - 1] = -np.inf
    b[KC + 1, NC] = np.nan
    b[k - 1, :] = 0.0  # -inf * 0: NaN along that row of C
    with np.errstate(invalid="ignore"):
        want = a @ b
    assert np.isnan(want).any() and np.isinf(want).any()
    np.testing.assert_array_equal(m.mm(a, b), want)
    np.testing.assert_array_equal(m.mm_ta(np.ascontiguousarray(a.T), b), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_packed_products_same_bits_on_any_count_of_threads(m, dtype):
    """Large enough to be cut into pieces on the threads, each packing its own blocks: the
    same bits on 1, 2 and 3 threads (random values, whose sums round)."""
    rows, k, cols = 2 * MC + 5, KC + 9, NC + 17
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((rows, k)).astype(dtype), rng.standard_normal((k, cols)).astype(dtype)
    before = diffc.set_threads(1)
    try:
        results = []
        for n in (1, 2, 3):
            diffc.set_threads(n)
            results.append((m.mm(a, b), m.mm_ta(np.ascontiguousarray(a.T), b)))
    finally:
        diffc.set_threads(before)
    for got in results[1:]:
        for x, y in zip(got, results[0]):
            np.testing.assert_array_equal(x, y)
    tol = dict(rtol=1e-12, atol=1e-12 * k) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-5 * k)
    np.testing.assert_allclose(results[0][0], a @ b, **tol)


# A transposed B (g @ W^T in a derivative) is packed from its columns (See Note [Packing]):
# these shapes are at the edges of the tiles and of this dtype's blocks.
def _packed_bt(dtype):
    kc, nc, mc = gemm.blocking(np.dtype(dtype).itemsize)
    return [
        (mc, kc, NV * W),
        (8 * MR + 1, 19, W - 1),  # one masked vector
        (2 * mc + 1, kc + 1, nc - 1),
        (2 * mc + 1, 2 * kc + 3, nc + W + 3),
        (mc + MR + 3, 5, 2 * nc + NV * W + W - 1),
        (3 * mc + 5, kc - 1, 2 * nc + 5),
    ]


def _assert_kernel_packs_bt(rows, k, cols, itemsize):
    assert rows * k * cols >= linalg.BLAS_MIN_WORK


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("idx", range(6), ids=lambda i: f"shape{i}")
def test_transposed_b_packed_from_its_columns_is_exact(m, idx, dtype):
    """Small integers: exact sums, so an element packed in the wrong place shows; random
    values: the same bits as the product of b copied to rows (the same chains of terms)."""
    rows, k, cols = _packed_bt(dtype)[idx]
    _assert_kernel_packs_bt(rows, k, cols, np.dtype(dtype).itemsize)
    rng = np.random.default_rng(rows + k + cols)
    a, b = _small_integers(rng, (rows, k), dtype), _small_integers(rng, (k, cols), dtype)
    np.testing.assert_array_equal(m.mm_tb(a, np.ascontiguousarray(b.T)), a @ b)
    a, b = rng.standard_normal((rows, k)).astype(dtype), rng.standard_normal((k, cols)).astype(dtype)
    np.testing.assert_array_equal(m.mm_tb(a, np.ascontiguousarray(b.T)), m.mm(a, b))
    b2 = rng.standard_normal((k, 2 * cols)).astype(dtype)  # columns 2 apart, also packed in place
    np.testing.assert_array_equal(m.mm_cols2(a, b2), m.mm(a, np.ascontiguousarray(b2[:, ::2])))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transposed_b_keeps_nan_and_inf_in_place(m, dtype):
    kc, nc, mc = gemm.blocking(np.dtype(dtype).itemsize)
    rows, k, cols = 2 * mc + 1, 2 * kc + 1, nc + W + 1
    _assert_kernel_packs_bt(rows, k, cols, np.dtype(dtype).itemsize)
    rng = np.random.default_rng(6)
    a, b = _small_integers(rng, (rows, k), dtype), _small_integers(rng, (k, cols), dtype)
    a[MR + 1, kc] = np.inf
    b[kc + 1, nc] = np.nan
    b[k - 1, cols - 1] = -np.inf  # in the masked vector's lanes
    b[k - 1, 0] = -0.0
    a[:, k - 1] = 0.0  # 0 * -inf: NaN down that column of C
    with np.errstate(invalid="ignore"):
        want = a @ b
    assert np.isnan(want).any() and np.isinf(want).any()
    np.testing.assert_array_equal(m.mm_tb(a, np.ascontiguousarray(b.T)), want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(2 * 168 + 5, 393, 345), (300, 200, 400)], ids=["by_rows", "by_columns"])
def test_transposed_b_same_bits_on_any_count_of_threads(m, shape, dtype):
    """Cut into pieces of rows, or of columns (more columns than rows: each piece starts at a
    column of b^T's rows), each packing its own blocks: the same bits on 1, 2 and 3 threads,
    and as b copied to rows."""
    rows, k, cols = shape
    _assert_kernel_packs_bt(rows, k, cols, np.dtype(dtype).itemsize)
    assert rows * k * cols >= linalg.PARALLEL_PRODUCT
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((rows, k)).astype(dtype), rng.standard_normal((k, cols)).astype(dtype)
    bt = np.ascontiguousarray(b.T)
    before = diffc.set_threads(1)
    try:
        results = []
        for n in (1, 2, 3):
            diffc.set_threads(n)
            results.append(m.mm_tb(a, bt))
        want = m.mm(a, b)
    finally:
        diffc.set_threads(before)
    for got in results:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transposed_b_is_passed_in_place(m, dtype):
    """The kernel gets b^T's memory with its strides (rows 1 apart, columns k apart): no copy
    of b before the call."""
    rows, k, cols = 2 * MC + 1, KC + 1, NC - 1
    a, bt = np.ones((rows, k), dtype), np.ones((cols, k), dtype)
    text = str(lower_program(ir_of(m, "mm_tb", a, bt)).module)
    symbol = gemm.symbol(ir.DoubleType() if dtype == np.float64 else ir.FloatType())
    call = re.search(rf'call void @"{symbol}"\(([^\n]*)\)', text)
    assert call is not None, text
    strides = [int(x) for x in re.findall(r"i64 (-?\d+)", call.group(1))[:4]]
    assert strides == [k, 1, 1, k]


FAILING_MALLOC = """
import ctypes, sys
import numpy as np
import llvmlite.binding as llvm
from diffc.lower import gemm, jit

calls = []
@ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_int64)
def failing_malloc(n):
    calls.append(n)
    return None

def product(kernel, name, a, b):
    c_fn = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] * 2,
                            ctypes.c_void_p, *[ctypes.c_int64] * 4)(kernel.address(name))
    (m, k), n, s = a.shape, b.shape[1], a.itemsize
    c = np.full((m, n), np.nan, a.dtype)
    c_fn(a.ctypes.data, a.strides[0] // s, a.strides[1] // s, b.ctypes.data, b.strides[0] // s,
         b.strides[1] // s, c.ctypes.data, n, m, n, k)
    return c

jit._init()
NAMES = {np.float64: "diffc_gemm2_f64", np.float32: "diffc_gemm2_f32"}
packed = {dtype: jit.Compiled(gemm.optimised(name)) for dtype, name in NAMES.items()}
llvm.add_symbol("malloc", ctypes.cast(failing_malloc, ctypes.c_void_p).value)
rng = np.random.default_rng(0)
kc = gemm.blocking(8)[0]
for dtype, name in NAMES.items():
    kernel = jit.Compiled(gemm.optimised(name))
    for m, k, n in ((17, 40, 29), (3, 0, 5)):
        a = rng.integers(-3, 4, size=(m, k)).astype(dtype)
        bt = rng.integers(-3, 4, size=(n, k)).astype(dtype)  # B transposed: its columns contiguous
        for b in (np.ascontiguousarray(bt.T), bt.T):
            np.testing.assert_array_equal(product(kernel, name, a, b), a @ b)
    # each element one chain of fused multiply-adds over k in order, packed (in blocks of
    # terms, 4 terms a step, then the rest) or not: the same bits, on values whose sums round
    for k in (1, 3, 4, 5, 7, 9, kc + 3, 2 * kc + 1):
        a = rng.standard_normal((2 * gemm.tile()[1] + 3, k)).astype(dtype)
        far = rng.standard_normal((k, 300)).astype(dtype).T[: len(a)]  # its columns 300 apart
        b = rng.standard_normal((k, 67)).astype(dtype)
        for a_in in (a, far):  # A read in place, and packed
            want = product(packed[dtype], name, a_in, b)
            np.testing.assert_array_equal(product(kernel, name, a_in, b), want)
assert len(calls) >= 4, calls  # every product but the empty ones asked malloc, and got nothing
print("ok")
"""


def test_products_when_malloc_fails_are_computed_element_by_element(tmp_path):
    """Without a buffer to pack into, the kernel computes C element by element: the same
    values, for a B of any strides, and zeros for an empty inner dimension; the same bits as
    its packed tiles on random values."""
    script = tmp_path / "failing_malloc.py"
    script.write_text(FAILING_MALLOC)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr

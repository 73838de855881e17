"""Gathers and their transposes on the threads (See Note [Gathers in parallel] in
prims/shape.py): with enough work, `x[ids]` copies rows on every thread, and so does its
gradient (gather_add) add rows when they are wide. The results are the same bits on 1, 2 and
3 threads and as NumPy's in-order `np.add.at`, and a bad index is still one located error."""

import numpy as np
import pytest
from support.native import build_program, ir_of, on_each_count, restore_threads, run_program  # noqa: F401 (a fixture)

import diffc
from diffc.lower.emit import PARALLEL_MIN, fusable_values
from diffc.lower.llvm import lower_program
from diffc.prims.shape import WIDE_ROW, gather_add_p
from diffc.typesys import TensorType, f64, i64

SRC = """
fn take(x, ids) = x[ids]
fn loss(x, ids, w) = sum(x[ids] * w)
fn back(x, ids, w) = grad(loss)(x, ids, w)
"""

ROWS = 300
WIDTH = 96  # elements of a row: wide enough for threads
COUNT = PARALLEL_MIN // WIDTH + 1000  # indices: enough work in all


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def _data(dtype, rows=ROWS, row_shape=(WIDTH,), ids=None, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, *row_shape)).astype(dtype)
    if ids is None:
        ids = rng.integers(-rows, rows, COUNT)
    w = rng.standard_normal(ids.shape + row_shape).astype(dtype)
    return x, ids, w


def _edges(w):
    """NaN, infinities, -0 and huge values among the cotangents at positions 3, 55 and 56
    (whose rows repeat, in the test below): inf and -inf added at two positions give NaN."""
    flat = w.reshape(len(w), -1)
    flat[3, :5] = [np.nan, np.inf, -np.inf, -0.0, 1e300 if w.dtype == np.float64 else 3e38]
    flat[55, :2] = [np.inf, -np.inf]
    flat[56, :2] = [-np.inf, np.inf]
    return w


def _scatter(x, ids, w):
    out = np.zeros_like(x)
    np.add.at(out, ids, w)  # (in the order of ids, one addition at a time)
    return out


def _on_each_count(fn):
    results = on_each_count(fn)
    for r in results[1:]:
        assert np.array_equal(r, results[0], equal_nan=True)
    return results[0]


def _functions(m, fn, *args) -> dict[str, str]:
    """name -> text of each function of the LLVM IR of `fn` at these arguments."""
    text = str(lower_program(ir_of(m, fn, *args)).module)
    return {part.split('"')[1]: part for part in text.split("\ndefine ")[1:]}


def _split(m, fn, loop, *args) -> bool:
    """Whether the loop named `loop` was moved into a function that runs on the threads."""
    return any(f"\n{loop}.par:" in text for name, text in _functions(m, fn, *args).items() if ".par" in name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_same_bits_on_any_count_of_threads(m, dtype):
    x, ids, w = _data(dtype)
    ids[:50] = 5  # many repeats of one row
    ids[50:60] = -1  # and of the last row, from the end
    w = _edges(w)
    taken = _on_each_count(lambda: m.take(x, ids))
    assert np.array_equal(taken, x[ids])
    grad = _on_each_count(lambda: m.back(x, ids, w))
    with np.errstate(invalid="ignore"):
        assert np.array_equal(grad, _scatter(x, ids, w), equal_nan=True)
    assert np.isnan(grad[5]).any() and np.isnan(grad[ROWS - 1]).any()


def test_the_large_gathers_are_split_and_the_small_ones_not(m):
    x, ids, w = _data(np.float64)
    assert _split(m, "take", "g", x, ids)
    assert _split(m, "back", "gar", x, ids, w)
    few = ids[: PARALLEL_MIN // WIDTH // 2]
    assert not _split(m, "take", "g", x, few)
    assert not _split(m, "back", "gar", x, few, w[: len(few)])
    narrow = _data(np.float64, row_shape=(WIDE_ROW - 1,))  # (more work in all, narrow rows)
    assert not _split(m, "back", "gar", *narrow)


def test_rows_of_several_axes_and_indices_of_several_axes(m):
    """Rows [n, c] at indices [a, b, c], as the convolution's patches take them."""
    rng = np.random.default_rng(1)
    x, _, _ = _data(np.float64, rows=40, row_shape=(8, 12))
    ids = rng.integers(0, 40, (30, 10, 3))
    w = rng.standard_normal(ids.shape + (8, 12))
    assert _split(m, "back", "gar", x, ids, w)
    assert np.array_equal(_on_each_count(lambda: m.take(x, ids)), x[ids])
    assert np.array_equal(_on_each_count(lambda: m.back(x, ids, w)), _scatter(x, ids, w))


@pytest.mark.parametrize("rows", [1, 2, 9])
def test_fewer_rows_than_pieces(m, rows):
    x, ids, w = _data(np.float64, rows=rows)
    assert np.array_equal(_on_each_count(lambda: m.back(x, ids, w)), _scatter(x, ids, w))


def test_rows_of_one_element_and_empty_shapes(m):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(1000)
    ids = rng.integers(0, 1000, 4 * PARALLEL_MIN)
    w = rng.standard_normal(ids.shape)
    assert np.array_equal(_on_each_count(lambda: m.back(x, ids, w)), _scatter(x, ids, w))
    assert np.array_equal(_on_each_count(lambda: m.take(x, ids)), x[ids])
    assert _split(m, "take", "g", x, ids) and not _split(m, "back", "gar", x, ids, w)
    ids[-1] = -1001
    with pytest.raises(diffc.BoundsError, match="index -1001 is out of bounds for an axis of length 1000"):
        m.take(x, ids)
    x, ids, w = _data(np.float64, ids=np.zeros(0, dtype=np.int64))
    assert m.take(x, ids).shape == (0, WIDTH)
    assert np.array_equal(m.back(x, ids, w), np.zeros_like(x))
    x, ids, w = _data(np.float64, row_shape=(0,))
    assert m.take(x, ids).shape == (COUNT, 0) and m.back(x, ids, w).shape == (ROWS, 0)
    with pytest.raises(diffc.BoundsError, match="out of bounds for an axis of length 0"):
        m.take(np.zeros((0, WIDTH)), np.zeros(COUNT, dtype=np.int64))


@pytest.mark.parametrize("fn", ["take", "back"])
@pytest.mark.parametrize("bad", [ROWS, -ROWS - 1])
def test_an_index_out_of_range_is_one_located_error(m, fn, bad):
    x, ids, w = _data(np.float64)
    ids[COUNT - 3] = bad
    assert _split(m, fn, "g" if fn == "take" else "gar", *((x, ids) if fn == "take" else (x, ids, w)))
    for n in (1, 2):
        diffc.set_threads(n)
        with pytest.raises(diffc.BoundsError) as e:
            m.take(x, ids) if fn == "take" else m.back(x, ids, w)
        assert (":3:26:" if fn == "back" else ":2:19:") in str(e.value)
        assert f"index {bad} is out of bounds for an axis of length {ROWS}" in str(e.value)


def test_the_scatter_add_checks_its_own_indices():
    """gather_add alone (its forward gather gone): the serial pass finds the bad index."""
    g_type, ids_type = TensorType(f64, (COUNT, WIDTH)), TensorType(i64, (COUNT,))
    prog = build_program([g_type, ids_type], lambda b, g, ids: [b.emit1(gather_add_p, [g, ids], shape=(ROWS, WIDTH))])
    assert "gar.par:" in str(lower_program(prog).module)
    _, ids, w = _data(np.float64)
    diffc.set_threads(2)
    (out,) = run_program(prog, [w, ids])
    assert np.array_equal(out, _scatter(np.zeros((ROWS, WIDTH)), ids, w))
    ids[COUNT - 1] = ROWS
    with pytest.raises(diffc.BoundsError, match=f"index {ROWS} is out of bounds for an axis of length {ROWS}"):
        run_program(prog, [w, ids])


COMPUTED = """
fn take_at(x, step, shift) = x[reshape(arange(64), [8, 8]) * step + shift]
fn loss_at(x, step, shift) = sum(x[reshape(arange(64), [8, 8]) * step + shift] ** 2)
fn grad_at(x, step, shift) = grad(loss_at)(x, step, shift)
"""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_computed_indices_are_read_where_they_are_computed(dtype):
    """x[i * step + shift] (im2col's positions in nn.conv2d): the index is computed as it is
    read, never stored as an array of its own; the values, NumPy's on any count of threads;
    an index computed out of range is one located error; the gradient (whose scatter-add reads
    the indices again) is NumPy's too."""
    m = diffc.compile(COMPUTED)
    rows = 64 * 3 + 5
    x = np.random.default_rng(1).standard_normal((rows, 2 * WIDTH)).astype(dtype)
    x[7, :3] = [np.nan, np.inf, -0.0]
    ids = np.arange(64).reshape(8, 8) * 3 + 5
    body = ir_of(m, "take_at", x, 3, 5).funcs["main"].body
    (gather,) = [e for e in body.eqns if e.prim.name == "gather"]
    assert gather.inputs[1].id in fusable_values(body)
    for got in on_each_count(lambda: m.take_at(x, 3, 5)):
        assert np.array_equal(got, x[ids], equal_nan=True)
    first = next(v for v in np.arange(64) * 4 + 5 if v >= rows)  # (the first in order)
    message = f":2:30: error: index {first} is out of bounds for an axis of length {rows}"
    with pytest.raises(diffc.BoundsError, match=message):
        m.take_at(x, 4, 5)
    want = np.zeros_like(x)
    want[ids] = 2 * x[ids]
    np.testing.assert_array_equal(m.grad_at(x, 3, 5), want)

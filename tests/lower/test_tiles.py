"""Loop nests that read an array across its rows (transposes) run in tiles of micro-tiles of
8 x 8 elements, whose lines are loaded as vectors and transposed by shuffles (Note [Tiles] in
lower/emit.py): the shuffles in the IR, and the values at the edges of tiles and micro-tiles,
of every dtype, NaN and inf included, on 1 to 3 threads, in 3-D and 4-D and through a
gradient."""

from __future__ import annotations

import re

import numpy as np
import pytest
from lower.test_llvm import show_llvm
from support.native import module, on_each_count

import diffc
from diffc.lower.emit import TILED_MIN

M = module("""
    fn turned(x) = transpose(x)
    fn doubled(x) = transpose(x) * 2.0
    fn mixed(x, y) = transpose(x) * y + max(transpose(x), y)
    fn batch(x) = transpose(x, [0, 2, 1]) + 1.0
    fn reversed(x) = transpose(x, [2, 1, 0]) * 3.0
    fn inner(x) = transpose(x, [0, 2, 1, 3]) - 1.0
    fn loss(x, w) = sum(transpose(x) * w)
    fn narrowed(x) = f32(transpose(x))
    fn widened(x) = f64(transpose(x)) + 1.0
    fn signs(x) = transpose(x) > 0.0
""")

SIDES = [1, 7, 8, 9, 15, 16, 17, 63, 64, 65]
SHAPES = [(n, n) for n in SIDES] + [(0, 5), (5, 0), (9, 65), (65, 17), (130, 33), (16, 200)]


def data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.bool_:
        return rng.standard_normal(shape) > 0
    if np.dtype(dtype).kind == "i":
        return rng.integers(-1000, 1000, shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    x.flat[: min(3, x.size)] = [np.nan, np.inf, -np.inf][: min(3, x.size)]
    return x


def same(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.bool_])
def test_transposed_copies(shape, dtype):
    x = data(shape, dtype)
    for got in on_each_count(lambda: M.turned(x)):
        same(got, x.T.copy())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_transposes_in_elementwise_chains(shape, dtype):
    """The transposed view read through a fused chain (a Lazy value) and next to a view read
    along its rows, NaN and inf kept."""
    x, y = data(shape, dtype), data(shape[::-1], dtype, seed=1)
    with np.errstate(invalid="ignore"):
        want = (x.T * dtype(2.0), x.T * y + np.maximum(x.T, y))
    for got in on_each_count(lambda: (M.doubled(x), M.mixed(x, y))):
        same(got[0], want[0])
        same(got[1], want[1])


@pytest.mark.parametrize("shape", [(8, 8), (17, 33), (64, 64), (100, 70), (16, 300)])
def test_results_of_another_dtype(shape):
    """The transposed array's vectors are of another type than the result's rows."""
    x = data(shape, np.float64)
    narrow = x.astype(np.float32)
    for got in on_each_count(lambda: (M.narrowed(x), M.widened(narrow), M.signs(x), M.signs(narrow))):
        same(got[0], x.T.astype(np.float32))
        same(got[1], narrow.T.astype(np.float64) + 1.0)
        same(got[2], x.T > 0)
        same(got[3], narrow.T > 0)


@pytest.mark.parametrize("offset", range(0, 64, 8))
@pytest.mark.parametrize("shape", [(17, 17), (64, 64), (70, 33)])
def test_arrays_off_a_cache_line(offset, shape):
    """The micro-tiles start where the transposed array's lines do: at each offset from a
    line, the first and last rows of micro-tiles are partial."""
    size = shape[0] * shape[1] * 8
    buf = np.zeros(size + 128, np.uint8)
    start = (-buf.ctypes.data) % 64 + offset
    x = buf[start : start + size].view(np.float64).reshape(shape)
    x[...] = data(shape, np.float64)
    for got in on_each_count(lambda: (M.turned(x), M.doubled(x), M.turned(x[1:, 2:]))):
        same(got[0], x.T.copy())
        same(got[1], x.T * 2.0)
        same(got[2], x[1:, 2:].T.copy())


@pytest.mark.parametrize("shape", [(3, 65, 17), (2, 64, 64), (4, 100, 33), (1, 1, 1), (2, 0, 5), (2, 130, 130)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batches_and_other_axes(shape, dtype):
    """[0, 2, 1] over a batch; [2, 1, 0], whose last axis is read along the first; and
    [0, 2, 1, 3], which keeps the rows contiguous."""
    x, x4 = data(shape, dtype), data((*shape, 3), dtype)
    for got in on_each_count(lambda: (M.batch(x), M.reversed(x), M.inner(x4))):
        same(got[0], x.transpose(0, 2, 1) + dtype(1.0))
        same(got[1], x.transpose(2, 1, 0) * dtype(3.0))
        same(got[2], x4.transpose(0, 2, 1, 3) - dtype(1.0))


@pytest.mark.parametrize("n", [5, 64, 129])
def test_the_gradient_of_a_transpose(n):
    """The cotangent is transposed back through the same loops."""
    x, w = data((n, n + 3), np.float64), data((n + 3, n), np.float64, seed=2)
    x[np.isnan(x) | np.isinf(x)] = 0.0
    grad = diffc.grad(M.loss)
    for got in on_each_count(lambda: grad(x, w)):
        same(got, w.T.copy())


def shuffled_lines(capsys, tmp_path, source: str, x: np.ndarray) -> set[str]:
    """The vector types of the shuffles in the LLVM IR generated for `source`'s main(x)."""
    p, arg = tmp_path / "p.dfl", tmp_path / "x.npy"
    p.write_text(source)
    np.save(arg, x)
    generated = show_llvm(capsys, p, "--arg", f"x={arg}")["LLVM IR, as generated"]
    return set(re.findall(r"shufflevector <(\d+ x \w+)>", generated))


def test_micro_tiles_are_transposed_by_shuffles(capsys, tmp_path):
    """8 x 8 elements (a cache line of f64 each way, half a line of f32), on the axis the view
    is contiguous along ([2, 1, 0]: the first); none where the rows stay contiguous."""
    x = np.ones((70, 70))
    assert shuffled_lines(capsys, tmp_path, "fn main(x) = transpose(x) * 2.0\n", x) == {"8 x double"}
    assert shuffled_lines(capsys, tmp_path, "fn main(x) = transpose(x)\n", x.astype(np.float32)) == {"8 x float"}
    cube = np.ones((70, 3, 70))
    assert shuffled_lines(capsys, tmp_path, "fn main(x) = transpose(x, [2, 1, 0]) * 2.0\n", cube) == {"8 x double"}
    rows = np.ones((4, 20, 20, 8))
    assert shuffled_lines(capsys, tmp_path, "fn main(x) = transpose(x, [0, 2, 1, 3]) * 2.0\n", rows) == set()


@pytest.mark.parametrize("n", [64, 512])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_micro_tiles_are_vectorised_by_rows(capsys, tmp_path, n, dtype):
    """LLVM vectorises a micro-tile by its rows: it scatters nothing (with constant trip
    counts it would vectorise the loop over the rows instead, gathering from the transposed
    block and scattering into the result)."""
    p, arg = tmp_path / "p.dfl", tmp_path / "x.npy"
    p.write_text("fn main(x) = transpose(x) * 2.0\n")
    np.save(arg, np.ones((n, n), dtype))
    optimised = show_llvm(capsys, p, "--arg", f"x={arg}")["LLVM IR, optimised"]
    assert "shufflevector" in optimised
    assert "llvm.masked.scatter" not in optimised


def test_small_transposes_are_not_tiled(capsys, tmp_path):
    """Below TILED_MIN elements of the two axes a transposing nest stays a plain nest: the
    micro-tiles' code cost LLVM more than it saved (the digits convnet's step, 20-odd small
    transposes: 6,800 -> 9,300 lines of IR, 35% more LLVM time)."""
    side = int(TILED_MIN**0.5) - 1
    assert shuffled_lines(capsys, tmp_path, "fn main(x) = transpose(x) * 2.0\n", np.ones((side, side))) == set()
    x = np.arange(side * side, dtype=np.float64).reshape(side, side)
    np.testing.assert_array_equal(diffc.compile("fn f(x) = transpose(x) * 2.0").f(x), x.T * 2.0)

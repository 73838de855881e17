"""A map's backward in blocks on the threads (See Note [Sums in blocks] in prims/scan.py): the
scan that sums the cotangents of a map's constants runs as blocks of rows, each summing from
zero, then added up in order. The gradients agree with NumPy's, are the same bits on 1, 2 and
3 threads, and a loop the program wrote, a short one or one that can fail stays serial."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.native import ir_of, module, on_each_count, restore_threads  # noqa: F401 (a fixture)

from diffc.lower.llvm import lower_program
from diffc.prims import scan

SRC = """
fn net(w1, w2, x) = sum(tanh(w2 @ tanh(w1 @ x)))
fn loss(w1, w2, xs) = sum(map(fn(x) => net(w1, w2, x), xs))
fn back(w1, w2, xs) = grad(loss, (0, 1))(w1, w2, xs)
# w1 also read outside the map: its sum starts from that cotangent
fn tied(w1, w2, xs) = grad(fn(a, b, c) => loss(a, b, c) + sum(a * a), (0, 1))(w1, w2, xs)
# a scalar constant: its cotangent is a scalar sum (`x[0]` keeps the backward a loop: ad/batch.py
# does not batch an index)
fn scaled(a, xs) = grad(fn(a, xs) => sum(map(fn(x) => sum(tanh(a * x)) * a + x[0], xs)))(a, xs)
# indexed at a computed place: a bounds check, so the backward may fail and stays serial
fn picked(w, xs, k) = grad(fn(w, xs) => sum(map(fn(x) => sum(tanh(w @ x)) * x[k], xs)))(w, xs)
# a matrix and a scalar constant, for generated shapes
fn both(w, c, xs) = grad(fn(w, c) => sum(map(fn(x) => sum(tanh(w @ x)) * c, xs)), (0, 1))(w, c)
# a fold the program wrote keeps its order
fn folded(w, xs) = fold(fn(acc, x) => acc + w @ x, zeros([16]), xs)
# rows read with no constant to differentiate: a backward of independent rows, no carries
fn rowwise(xs) = grad(fn(xs) => sum(map(fn(x) => sum(tanh(x @ transpose(x))), xs)))(xs)
"""


def _data(rows, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((64, 32)) / 8, rng.standard_normal((16, 64)) / 8, rng.standard_normal((rows, 32))


def _numpy_grads(w1, w2, xs):
    h = np.tanh(xs @ w1.T)  # [rows, 64]
    g_out = 1 - np.tanh(h @ w2.T) ** 2  # [rows, 16]
    g_h = (g_out @ w2) * (1 - h**2)
    return g_h.T @ xs, g_out.T @ h


def _functions(fn, *args):
    return str(lower_program(ir_of(module(SRC), fn, *args)).module)


def test_a_long_map_backward_runs_in_blocks_and_a_short_one_does_not():
    assert "blocks.par:" in _functions("back", *_data(512))
    assert "blocks.par:" not in _functions("back", *_data(2 * scan.SUM_BLOCKS - 1))


def test_a_backward_that_may_fail_and_a_fold_of_the_program_stay_serial():
    w1, _, xs = _data(512)
    assert "blocks.par:" not in _functions("picked", w1, xs, 3)
    assert "blocks.par:" not in _functions("folded", w1[:16], xs)


@pytest.mark.parametrize("rows", [512, 517, 4096])  # 517: the last block is shorter
def test_gradients_agree_with_numpy_and_are_the_same_on_every_count_of_threads(rows):
    w1, w2, xs = _data(rows)
    results = on_each_count(lambda: module(SRC).back(w1, w2, xs))
    for r in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(r, results[0]))
    for got, want in zip(results[0], _numpy_grads(w1, w2, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_a_sum_that_starts_from_a_cotangent_and_a_scalar_sum():
    w1, w2, xs = _data(512)
    g1, g2 = module(SRC).tied(w1, w2, xs)
    want1, want2 = _numpy_grads(w1, w2, xs)
    np.testing.assert_allclose(g1, want1 + 2 * w1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g2, want2, rtol=1e-12, atol=1e-12)
    a, rows = 0.7, np.random.default_rng(1).standard_normal((4096, 32))
    assert "blocks.par:" in _functions("scaled", a, rows)
    want = np.sum(np.tanh(a * rows)) + a * np.sum((1 - np.tanh(a * rows) ** 2) * rows)
    got = on_each_count(lambda: module(SRC).scaled(a, rows))
    assert got[0] == got[1] == got[2]
    assert got[0] == pytest.approx(want, rel=1e-12)


def test_nan_and_infinities_reach_the_sums_as_in_the_serial_loop():
    w1, w2, xs = _data(512)
    xs[3, 0], xs[300, 5], xs[301, 5] = np.nan, np.inf, -np.inf
    g1, g2 = module(SRC).back(w1, w2, xs)
    with np.errstate(invalid="ignore"):
        want1, want2 = _numpy_grads(w1, w2, xs)
    np.testing.assert_array_equal(np.isnan(g1), np.isnan(want1))
    np.testing.assert_array_equal(np.isnan(g2), np.isnan(want2))
    np.testing.assert_allclose(np.nan_to_num(g1), np.nan_to_num(want1), rtol=1e-12, atol=1e-12)


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(1, 700), hidden=st.integers(1, 40), width=st.integers(1, 40), seed=st.integers(0, 99))
def test_generated_shapes_agree_with_numpy_on_every_count_of_threads(rows, hidden, width, seed):
    """In blocks or not (as the work decides), the gradients of a map's matrix and scalar
    constants are NumPy's, and the same bits on 1, 2 and 3 threads."""
    rng = np.random.default_rng(seed)
    w, c, xs = rng.standard_normal((hidden, width)) / 4, 0.7, rng.standard_normal((rows, width))
    results = on_each_count(lambda: module(SRC).both(w, c, xs))
    assert all(np.array_equal(a, b) for r in results[1:] for a, b in zip(r, results[0]))
    h = np.tanh(xs @ w.T)
    np.testing.assert_allclose(results[0][0], (c * (1 - h**2)).T @ xs, rtol=1e-11, atol=1e-11)
    assert results[0][1] == pytest.approx(h.sum(), rel=1e-11, abs=1e-11)


def test_a_backward_of_independent_rows_runs_in_blocks():
    """A map that differentiates only its rows (attention's scores per batch and head): its
    backward carries nothing from row to row, and runs as blocks on the threads too, the same
    bits on 1, 2 and 3 threads, NumPy's values."""
    xs = np.random.default_rng(3).standard_normal((64, 24, 8)) / 4
    xs[5, 2, 1] = np.nan
    assert "blocks.par:" in _functions("rowwise", xs)
    results = on_each_count(lambda: module(SRC).rowwise(xs))
    assert all(np.array_equal(r, results[0], equal_nan=True) for r in results[1:])
    t = np.tanh(xs @ np.swapaxes(xs, 1, 2))
    g = 1 - t**2
    np.testing.assert_allclose(results[0], g @ xs + np.swapaxes(g, 1, 2) @ xs, rtol=1e-12, atol=1e-12)

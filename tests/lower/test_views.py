"""Views: transpose, slices, windows, broadcasts and indexing lower to strided views of one
buffer (no copy). These tests check that every consumer of a view reads the right elements:
elementwise ops and reductions on non-contiguous inputs, views of views, views returned as
results, passed to loops and to recursive calls, gathered from and multiplied."""

from __future__ import annotations

import numpy as np
import pytest
from support import reference as R
from support.native import module

VIEWS = module("""
    fn tr(x) = transpose(x)
    fn tr_add(x, y) = transpose(x) + y
    fn tr_mul_self(x) = transpose(x) * transpose(x)
    fn tr_3d(t) = transpose(t, [2, 0, 1]) - 1.0
    fn slice_2d(x) = x[1:, :-1] * 2.0
    fn slice_of_slice(x) = x[1:][1:3]
    fn negative_slices(x) = x[-3:-1, -2:] + 0.0
    fn column(x, j) = exp(x[:, j])
    fn row_of_transpose(x, i) = transpose(x)[i]
    fn element_of_transpose(x, i, j) = transpose(x)[i, j]
    fn windows_elementwise(v) = windows(v, 3) * 1.5
    fn windows_of_slice(v) = windows(v[1:], 2)
    fn windows_2d(m) = windows(m, 2)[1] + 0.0
    fn windows_transposed(m) = transpose(windows(m, 2)[0])
    fn broadcast_then_transpose(v) = transpose(full([2, 3], v)) * 1.0
    fn broadcast_column(x, c) = x + transpose([c])
    fn broadcast_add_t(x, v) = transpose(x) + v
    fn reshape_of_transpose(x) = reshape(transpose(x), [12])
    fn reshape_of_slice(x) = reshape(x[:, 1:3], [6])
    fn sum_of_transpose(x) = (sum(transpose(x), axis=0), sum(transpose(x), axis=1), max(transpose(x)))
    fn argmax_of_transpose(x) = argmax(transpose(x), axis=1)
    fn matmul_of_transposes(a, b) = transpose(a) @ transpose(b)
    fn matvec_of_column(a, x) = a @ x[:, 0]
    fn gather_from_transpose(x, ids) = transpose(x)[ids]
    fn concat_views(x) = concat(transpose(x)[0:2], x[:, 0:3], axis=0)
    fn stack_views(x) = stack(x[:, 0], x[:, 1], x[:, 3])
    fn map_over_transpose(x) = map(fn(r) => sum(r * r), transpose(x))
    fn map_over_windows(v) = map(fn(w) => w[0] * w[2] - w[1], windows(v, 3))
    fn scan_over_transpose(x) = scan(fn(c, r) => (c + r, c * r), zeros([3]), transpose(x))
    fn fold_over_slice(x) = fold(fn(a, r) => a + r, zeros([2]), x[:, 1:3])
    fn where_of_transpose(x) = where(transpose(x) > 0.0, transpose(x), 0.0)
    fn views_as_results(x) = (transpose(x), x[1:], x[:, 2], windows(x, 2))
    fn depth_sum(x, n) = if n == 0 { sum(x) } else { depth_sum(x, n - 1) + x[0, 0] }
    fn view_into_recursion(x) = depth_sum(transpose(x)[1:], 3)
    fn comprehension_of_view(x) = for i in 0..4, j in 0..3 => transpose(x)[i, j] * 10.0
    fn if_of_views(x, c) = if c > 0.0 { transpose(x)[0] } else { x[:, 1] }
""")

rng = np.random.default_rng(7)
X = rng.normal(size=(3, 4))
Y = rng.normal(size=(4, 3))
T3 = rng.normal(size=(2, 3, 4))
V = rng.normal(size=(6,))
M = rng.normal(size=(5, 2))

CASES = [
    ("tr", (X,), X.T),
    ("tr_add", (X, Y), X.T + Y),
    ("tr_mul_self", (X,), X.T * X.T),
    ("tr_3d", (T3,), np.transpose(T3, (2, 0, 1)) - 1),
    ("slice_2d", (X,), X[1:, :-1] * 2),
    ("slice_of_slice", (V,), V[1:][1:3]),
    ("negative_slices", (X,), X[-3:-1, -2:]),
    ("column", (X, 2), np.exp(X[:, 2])),
    ("column", (X, -1), np.exp(X[:, -1])),
    ("row_of_transpose", (X, 1), X.T[1]),
    ("row_of_transpose", (X, -4), X.T[-4]),
    ("element_of_transpose", (X, 3, -1), X.T[3, -1]),
    ("windows_elementwise", (V,), R.windows(V, 3) * 1.5),
    ("windows_of_slice", (V,), R.windows(V[1:], 2)),
    ("windows_2d", (M,), R.windows(M, 2)[1]),
    ("windows_transposed", (M,), R.windows(M, 2)[0].T),
    ("broadcast_then_transpose", (V[:3],), np.full((2, 3), V[:3]).T),
    ("broadcast_column", (X, V[:3]), X + V[:3][:, None]),
    ("broadcast_add_t", (X, V[:3]), X.T + V[:3]),
    ("reshape_of_transpose", (X,), X.T.reshape(12)),
    ("reshape_of_slice", (X,), X[:, 1:3].reshape(6)),
    ("sum_of_transpose", (X,), (X.T.sum(0), X.T.sum(1), X.max())),
    ("argmax_of_transpose", (X,), np.argmax(X.T, axis=1)),
    ("matmul_of_transposes", (X, Y), X.T @ Y.T),
    ("matvec_of_column", (Y, X), Y @ X[:, 0]),
    ("gather_from_transpose", (X, np.array([[3, 0], [-1, 1]])), X.T[np.array([[3, 0], [-1, 1]])]),
    ("concat_views", (X,), np.concatenate([X.T[0:2], X[:, 0:3]])),
    ("stack_views", (X,), np.stack([X[:, 0], X[:, 1], X[:, 3]])),
    ("map_over_transpose", (X,), (X.T**2).sum(1)),
    ("map_over_windows", (V,), np.array([w[0] * w[2] - w[1] for w in R.windows(V, 3)])),
    ("fold_over_slice", (X,), X[:, 1:3].sum(0)),
    ("where_of_transpose", (X,), np.where(X.T > 0, X.T, 0.0)),
    ("views_as_results", (X,), (X.T, X[1:], X[:, 2], R.windows(X, 2))),
    ("view_into_recursion", (X,), X.T[1:].sum() + 3 * X.T[1, 0]),
    ("comprehension_of_view", (X,), X.T * 10),
    ("if_of_views", (X, 1.0), X.T[0]),
    ("if_of_views", (X, -1.0), X[:, 1]),
]


def _scan_ref(x):
    c = np.zeros(3)
    ys = []
    for r in x.T:
        c, y = c + r, c * r
        ys.append(y)
    return c, np.array(ys)


CASES.append(("scan_over_transpose", (X,), _scan_ref(X)))


def _assert_tree_close(got, want):
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_tree_close(g, w)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("name, args, want", CASES, ids=[f"{c[0]}-{k}" for k, c in enumerate(CASES)])
def test_view_values(name, args, want):
    _assert_tree_close(VIEWS.function(name)(*args), want)


def test_results_do_not_alias_each_other_or_the_input():
    x = X.copy()
    t, tail, col, w = VIEWS.views_as_results(x)
    t[0, 0] = 1e9
    tail[0, 0] = 2e9
    col[0] = 3e9
    np.testing.assert_array_equal(x, X)
    again = VIEWS.views_as_results(x)
    np.testing.assert_array_equal(again[0], X.T)
    assert all(a.flags.c_contiguous for a in again if isinstance(a, np.ndarray))


def test_non_contiguous_numpy_arguments():
    big = rng.normal(size=(8, 6))
    for arg in (big.T[:4, :3], big[::2, ::2], big[1:4, 2:6], np.asfortranarray(X)):
        assert not arg.flags.c_contiguous or arg is X
        np.testing.assert_allclose(VIEWS.tr(arg), arg.T)
        np.testing.assert_allclose(VIEWS.sum_of_transpose(arg)[0], arg.T.sum(0))


def test_large_views_use_heap_arenas():
    """Buffers beyond the stack arena limit take the malloc path."""
    big = rng.normal(size=(300, 200))
    np.testing.assert_allclose(VIEWS.tr_mul_self(big), big.T * big.T)
    np.testing.assert_allclose(VIEWS.map_over_transpose(big), (big.T**2).sum(1), rtol=1e-12)


TILED = module("""
    fn t(x) = transpose(x) * 2.0
    fn t3(x) = transpose(x, [0, 2, 1]) + x[0, 0, 0]
    fn tm(x) = transpose(x)[1:, 3:]
""")


@pytest.mark.parametrize("shape", [(64, 64), (65, 97), (200, 70), (64, 63), (130, 129)])
def test_transposing_loops_in_tiles_cover_every_element(shape):
    """Read across rows, a loop nest runs in tiles (Note [Tiles] in lower/emit.py), with
    partial tiles at the edges."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape)
    np.testing.assert_array_equal(TILED.t(x), x.T * 2.0)
    np.testing.assert_array_equal(TILED.tm(x), x.T[1:, 3:])
    y = np.random.default_rng(1).standard_normal((2, *shape))
    np.testing.assert_array_equal(TILED.t3(y), y.transpose(0, 2, 1) + y[0, 0, 0])


DEST = module("""
    fn cat_rows(a, b) = map(fn(x, y) => concat(x, y), a, b)
    fn cat_tape(a, b, o) = sum(map(fn(x, y) => sum(concat(x, y) * o), a, b))
    fn gather_rows(x, ids) = map(fn(i) => x[ids], arange(3))
    fn reduce_rows(x) = map(fn(m) => (sum(m, axis=0), argmax(m, axis=1), m @ m), x)
    fn twice(a) = map(fn(x) { let y = concat(x, x); (y, 1.0, y) }, a)
    fn twice_inner(a) = map(fn(x) { let y = map(fn(v) => v * 2.0, x); (y, y) }, a)
""")


def test_results_computed_into_a_maps_rows():
    """Ops that compute into their destination (em.result) honour a row's offset."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((4, 2)), rng.standard_normal((4, 3))
    np.testing.assert_array_equal(DEST.cat_rows(a, b), np.concatenate([a, b], axis=1))
    import diffc

    o = rng.standard_normal(5)
    go = diffc.grad(DEST.cat_tape, 2)(a, b, o)
    np.testing.assert_allclose(go, np.concatenate([a, b], axis=1).sum(axis=0), rtol=1e-13)
    x, ids = rng.standard_normal((6, 4)), np.array([5, 0, 2])
    np.testing.assert_array_equal(DEST.gather_rows(x, ids), np.stack([x[ids]] * 3))
    m = rng.standard_normal((3, 4, 4))
    s, am, mm = DEST.reduce_rows(m)
    np.testing.assert_allclose(s, m.sum(axis=1), rtol=1e-13)
    np.testing.assert_array_equal(am, m.argmax(axis=2))
    np.testing.assert_allclose(mm, m @ m, rtol=1e-13)
    first, _, second = DEST.twice(a)  # one value, two results: both rows written
    np.testing.assert_array_equal(first, np.concatenate([a, a], axis=1))
    np.testing.assert_array_equal(second, first)
    for got in DEST.twice_inner(a):
        np.testing.assert_array_equal(got, a * 2.0)

"""A map's body computes its results straight into the rows of the map's outputs (prims/map_.py,
em.result, loop carries' homes): every kind of op that does so gives the same rows as the body
called on each row alone, where nothing is a row of anything."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import module

import diffc

BODIES = {
    "concat": "concat(x, x * 2.0)",
    "gather": "x[[2, 0, 1, 5]]",
    "reductions": "{ let m = reshape(x, [2, 3]); (sum(m, axis=0), argmax(m, axis=1), max(m, axis=1)) }",
    "product": "reshape(concat(x, x, x, x, x, x, x, x), [16, 3]) @ ones([3, 200])",
    "small product": "reshape(x, [2, 3]) @ reshape(x, [3, 2])",
    "fold": "fold(fn(c, v) => c * 0.5 + x * f64(v), zeros([6]), arange(4))",
    "scan": "scan(fn(c, v) => (c + x, c * f64(v)), x, arange(3))",
    "twice": "{ let y = concat(x, x); (y, sum(y), y) }",
    "inner map": "map(fn(v) => concat([v], [v * 3.0]), x)",
    "iota": "f64(arange(6)) * x",
    "gradient": "grad(fn(w) => sum(scan(fn(h, v) { let n = tanh(w * h + v); (n, n) }, x, reshape(x, [6, 1])).1))(x)",
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_rows_equal_the_body_on_each_row(name):
    m = module(f"""
        fn body(x) = {BODIES[name]}
        fn rows(xs) = map(fn(x) => body(x), xs)
        fn nested(xss) = map(fn(xs) => map(fn(x) => body(x), xs), xss)
    """)
    xs = np.random.default_rng(len(name)).standard_normal((3, 6))
    want = [m.body(x) for x in xs]
    got = m.rows(xs)
    if not isinstance(got, tuple):
        got, want = (got,), [(w,) for w in want]
    for k, g in enumerate(got):
        np.testing.assert_allclose(g, np.stack([np.asarray(w[k]) for w in want]), rtol=1e-13, atol=1e-14)
    nested = m.nested(np.stack([xs, xs[::-1]]))
    first = nested[0] if isinstance(nested, tuple) else nested
    np.testing.assert_allclose(first[1], first[0][::-1], rtol=1e-13, atol=1e-14)


def test_per_row_gradients_of_a_map():
    m = module("""
        fn f(x) = sum(concat(x, x * x) * f64(arange(12)))
        fn total(xs) = sum(map(fn(x) => f(x), xs))
    """)
    xs = np.random.default_rng(9).standard_normal((3, 6))
    want = np.stack([diffc.grad(m.f)(x) for x in xs])
    np.testing.assert_allclose(diffc.grad(m.total)(xs), want, rtol=1e-13)

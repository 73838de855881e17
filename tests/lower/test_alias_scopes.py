"""Alias scopes on arena buffers (Note [Alias scopes] in lower/emit.py): a loop that reads one
temporary and writes another is vectorised, and results are unchanged where temporaries,
loop carries swapped each iteration and in-place updates meet."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import module

from diffc.lower import jit
from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.pytree import unflatten
from diffc.runtime.values import flatten_args, type_of

P = module("""
    fn two_temps(z) {
        let m = max(z, axis=1);
        let e = exp(z - reshape(m, [shape(z)[0], 1]));
        let s = sum(e, axis=1);
        (sum(log(s)), e * reshape(1.0 / s, [shape(z)[0], 1]))
    }
    fn carries(h0, w, xs) = scan(fn(h, x) { let h2 = tanh(w @ h + x); (h2, sum(h2 * h)) }, h0, xs)
    fn swap_rows(a) = fold(fn(acc, i) => acc[[1, 0]] * 0.5 + acc, a, arange(5))
""")


def optimised(fn: str, *args) -> str:
    arrays, tree = flatten_args(args)
    prog, _ = to_ir(P.ast, fn, unflatten(tree, [type_of(a) for a in arrays]))
    return str(jit.optimise(str(lower_program(prog).module)))


def test_a_loop_between_two_temporaries_is_vectorised():
    z = np.random.default_rng(0).standard_normal((64, 40))
    ir = optimised("two_temps", z)
    assert "!alias.scope" in ir and "!noalias" in ir
    assert "<8 x double>" in ir or "<4 x double>" in ir or "<2 x double>" in ir


def test_results_are_unchanged():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((64, 40))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    s = e.sum(axis=1)
    total, p = P.two_temps(z)
    assert total == pytest.approx(np.log(s).sum(), rel=1e-13)
    np.testing.assert_allclose(p, e / s[:, None], rtol=1e-13)

    h0, w, xs = rng.standard_normal(6), rng.standard_normal((6, 6)) / 3, rng.standard_normal((9, 6))
    h, ys = h0, []
    for x in xs:
        h2 = np.tanh(w @ h + x)
        ys.append((h2 * h).sum())
        h = h2
    got_h, got_ys = P.carries(h0, w, xs)
    np.testing.assert_allclose(got_h, h, rtol=1e-13)
    np.testing.assert_allclose(got_ys, ys, rtol=1e-13)

    a = rng.standard_normal((2, 7))
    want = a.copy()
    for _ in range(5):
        want = want[[1, 0]] * 0.5 + want
    np.testing.assert_allclose(P.swap_rows(a), want, rtol=1e-13)

"""The guards pass: a derivative product keeps its guard (0 where the cotangent or tangent is 0,
see Note [Structural zeros] in ad/vjp.py) only where that factor may be a zero standing for "no
dependence"; elsewhere it is a plain product. Each edge below is NaN when its guard is dropped."""

import numpy as np
import pytest

import diffc
from diffc.ir.walk import program_bodies
from diffc.pipeline import to_ir
from diffc.typesys import TensorType, f64

SRC = """
fn chain(p, s) = iterate(fn(x) => x - 0.01 * p * sin(x) * x * exp(x), s, 100)
fn branch(x) = where(x > 0.0, x * log(x), 0.0)

# the carry's cotangent is a structural zero only after a backward step: the analysis must
# follow the loop's carries, not only its first round
fn carried(a, w) {
    let (a2, w2) = iterate(fn(s) { let (a, w) = s; (where(w > 0.0, 0.0, a) * log(w), w + 1.0) }, (a, w), 2);
    a2 + w2
}
fn two(x, y) = x * log(y)
fn pair(x) = (log(x), x)
fn first(w) = sqrt(w)[0]
"""


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def _guards(m, name, nargs, after=None):
    types = (TensorType(f64, ()),) * nargs
    prog, _ = to_ir(m.ast, name, types, transform=("grad", tuple(range(nargs)), True), after=after)
    return sum(e.prim.name == "guarded_mul" for b in program_bodies(prog) for e in b.eqns)


def test_a_chain_without_where_has_plain_products(m):
    assert _guards(m, "chain", 2, after="specialise") > 0
    assert _guards(m, "chain", 2) == 0
    p, s = 0.7, 0.3
    eps = 1e-6
    g = diffc.grad(m.chain, argnums=(0, 1))(p, s)
    fd_p = (m.chain(p + eps, s) - m.chain(p - eps, s)) / (2 * eps)
    fd_s = (m.chain(p, s + eps) - m.chain(p, s - eps)) / (2 * eps)
    np.testing.assert_allclose(g, [fd_p, fd_s], rtol=1e-6)


def test_the_branch_not_taken_keeps_its_guard(m):
    assert _guards(m, "branch", 1) > 0
    assert diffc.grad(m.branch)(0.0) == 0.0


def test_a_zero_carried_from_the_next_step_keeps_the_guard(m):
    assert diffc.grad(m.carried, argnums=(0, 1))(1.0, 0.0) == (0.0, 1.0)


def test_zero_tangents_and_cotangents_from_outside_keep_the_guard(m):
    # d(x log y) along (1, 0) at y = 0 is log 0 = -inf; the tangent 0 of y meets 1/y = inf
    assert diffc.jvp(m.two)(1.0, 0.0, 1.0, 0.0)[1] == -np.inf
    # the cotangent 0 of log(x) meets 1/x = inf at 0
    assert diffc.vjp(m.pair)(0.0, (0.0, 1.0)) == (1.0,)


def test_a_materialised_zero_cotangent_keeps_the_guard(m):
    np.testing.assert_array_equal(diffc.grad(m.first)(np.array([1.0, 0.0])), [0.5, 0.0])

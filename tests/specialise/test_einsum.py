"""`einsum` against NumPy's: values for the contractions users write (one and two operands,
implicit output, diagonals, empty axes, f32, integers), the primitives each becomes (one
product where it is one, no copy of a contiguous operand), and a located error for each bad
spec. Its derivatives are those of the primitives it traces into (rows in ad/test_rules.py)."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import ir_of, module

import diffc
from diffc.errors import ShapeError, TypeError_

CASES = [
    ("ij,jk->ik", (3, 4), (4, 5)),
    ("ij,kj->ik", (3, 4), (5, 4)),
    ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),
    ("bhqd,bhkd->bhqk", (2, 3, 4, 5), (2, 3, 6, 5)),
    ("i,i->", (4,), (4,)),
    ("ij,j->i", (3, 4), (4,)),
    ("j,ij->i", (4,), (3, 4)),
    ("i,j->ij", (3,), (4,)),
    ("ij,ij->ij", (3, 4), (3, 4)),
    ("bi,bi->b", (3, 4), (3, 4)),
    ("bij,jk->bki", (2, 3, 4), (4, 5)),
    ("ijk,ikl->jl", (2, 3, 4), (2, 4, 5)),
    ("abc,cd->", (2, 3, 4), (4, 5)),
    ("ij,kl->ijkl", (2, 3), (4, 5)),
    ("iij,jk->ik", (3, 3, 4), (4, 2)),
    ("ij,jk", (3, 4), (4, 5)),
    ("ba,ca", (3, 4), (5, 4)),
    ("ij,jk->ik", (3, 0), (0, 5)),
    ("ij,jk->ik", (0, 2), (2, 3)),
    ("ij->ji", (3, 4)),
    ("ij->i", (3, 4)),
    ("ij->j", (3, 4)),
    ("ij->", (3, 4)),
    ("ii->", (4, 4)),
    ("ii->i", (4, 4)),
    ("iji->j", (3, 4, 3)),
    ("ji", (3, 4)),
    ("ii", (0, 0)),
    ("...ij,...jk->...ik", (2, 3, 4), (2, 4, 5)),
    ("...ij,...jk", (2, 1, 3, 4), (5, 4, 2)),
    ("...ij,jk->...ik", (2, 3, 4), (4, 5)),
    ("...i,...i->...", (3, 4), (1, 4)),
    ("i...j,j...k->i...k", (2, 3, 4), (4, 3, 5)),
    ("...,...", (2, 3), (3,)),
    ("i...->...", (3, 4, 5)),
    ("...ii->...i", (2, 3, 3)),
    ("ij...->ji", (3, 4)),
]


def _run(spec, *xs):
    names = ", ".join("abc"[: len(xs)])
    return getattr(module(f'fn f({names}) = einsum("{spec}", {names})'), "f")(*xs)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}:{c[1:]}" for c in CASES])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_einsum_matches_numpy(case, dtype):
    spec, *shapes = case
    rng = np.random.default_rng(0)
    xs = [rng.integers(-4, 5, size=s).astype(dtype) for s in shapes]
    want = np.einsum(spec, *xs)
    got = _run(spec, *xs)
    assert np.shape(got) == want.shape
    if want.ndim:  # a scalar result is a Python number
        assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_einsum_of_infinities_and_nan_follows_the_products():
    a = np.array([[np.inf, 1.0], [np.nan, 0.0]])
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(_run("ij,jk->ik", a, np.eye(2)), np.einsum("ij,jk->ik", a, np.eye(2)))


@pytest.mark.parametrize(
    "spec, a, b, prims",
    [
        ("ij,jk->ik", (3, 4), (4, 5), ["matmul"]),
        ("ij,kj->ik", (3, 4), (5, 4), ["transpose", "matmul"]),
        ("bhqd,bhkd->bhqk", (2, 3, 4, 5), (2, 3, 6, 5), ["transpose", "matmul"]),
        ("i,i->", (4,), (4,), ["matmul"]),
        ("ij,ij->ij", (3, 4), (3, 4), ["mul"]),
    ],
)
def test_a_contraction_is_one_product(spec, a, b, prims):
    """The common contractions become `@` on views: no reshape (copy) and no reduction."""
    prog = ir_of(module(f'fn f(a, b) = einsum("{spec}", a, b)'), "f", np.ones(a), np.ones(b))
    assert [e.prim.name for e in prog.main.body.eqns] == prims


def test_a_gradient_through_einsum_matches_the_transposed_products():
    rng = np.random.default_rng(1)
    q, k, w = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 3, 5))
    m = diffc.compile('fn s(q, k, w) = sum(einsum("bqd,bkd->bqk", q, k) * w)')
    gq, gk = diffc.grad(m.s, (0, 1))(q, k, w)
    np.testing.assert_allclose(gq, np.einsum("bqk,bkd->bqd", w, k), rtol=1e-12)
    np.testing.assert_allclose(gk, np.einsum("bqk,bqd->bkd", w, q), rtol=1e-12)


@pytest.mark.parametrize(
    "call, error, message",
    [
        ('einsum("ij,jk->ix", a, a)', TypeError_, 'output index `x` of "ij,jk->ix" is in no operand'),
        ('einsum("ij,jk->ik", a, ones([3, 2]))', ShapeError, "index `j` has length 2 and 3"),
        ('einsum("ij,jk->ik", a)', TypeError_, "names 2 operands, but 1 is given"),
        ('einsum("ij", a, a)', TypeError_, "names 1 operands, but 2 are given"),
        ('einsum("ij,jk,kl->il", a, a, a)', TypeError_, "one or two operands, got 3"),
        ('einsum("i1->i", a)', TypeError_, "index letter"),
        ('einsum("i....", a)', TypeError_, "index letter"),
        ('einsum("...i...", a)', TypeError_, "more than one `...`"),
        ('einsum("i->...", a)', TypeError_, "has `...` but no operand has"),
        ('einsum("i...->i", a)', ShapeError, "needs a `...` for the axes under `...`"),
        ('einsum("...i,...i", a, ones([3, 2]))', ShapeError, "an axis under `...` has length 2 and 3"),
        ('einsum("ijk...", a)', ShapeError, "names 3 axes and `...`, but operand 1 is f64[2, 2]"),
        ("einsum(3, a)", TypeError_, "string literal"),
        ('einsum("ijk->i", a)', ShapeError, "names 3 axes, but operand 1 is f64[2, 2]"),
        ('einsum("ij->ii", a)', TypeError_, "appears twice in the output"),
        ('einsum("ij->ij", a, axis=0)', TypeError_, "no keyword argument `axis`"),
    ],
)
def test_a_bad_spec_is_a_located_error(call, error, message):
    src = f"fn main() {{\n    let a = ones([2, 2]);\n    {call}\n}}\n"
    with pytest.raises(error) as e:
        diffc.compile(src).main()
    assert message in str(e.value) and ":3:" in str(e.value)

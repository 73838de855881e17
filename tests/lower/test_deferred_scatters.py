"""Deferred scatter-adds (See Note [Deferred scatters] in lower/loops.py): a backward loop that
adds a scalar into its accumulator at several indices affine in the loop index (the cotangents
of `x[i + 1]` and `x[i]`) adds the first in the loop and the others after each block of
iterations, one vectorisable loop per term, instead of a scalar loop whose iterations each
depend on the one before through memory. The structure is checked, not the time; the values
against NumPy around the block's size, in f32 and f64, at first and second order."""

from __future__ import annotations

import functools
import textwrap

import numpy as np
import pytest
from lower.test_llvm import show_llvm

import diffc
from diffc.ir.walk import all_eqns
from diffc.lower.loops import DEFER_BLOCK, accumulators, deferred_scatters
from diffc.pipeline import to_ir
from diffc.prims.scan import scan_p
from diffc.runtime.values import type_of

SRC = """
fn diff(x) = sum(for i in 0..len(x) - 1 => (x[i + 1] - x[i]) ** 2)
fn wide(x) = sum(for i in 0..len(x) - 4 => x[i] * x[i + 4] - 0.5 * x[i + 2] + x[2 * i // 2 + 1])
fn stencil(u) {
    let s = shape(u);
    let l = for i in 1..s[0] - 1, j in 1..s[1] - 1 =>
        u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1] - 4.0 * u[i, j];
    sum(l * l)
}
fn gathered(a) = sum(map(fn(k) => a[k] * a[(k * 7) % len(a)], arange(len(a))))
fn diff_squared(x) = sum(grad(diff)(x) ** 2)
fn middle(x) = sum(for i in 0..len(x) - 4 => x[i + 2] * x[i + 1] + 3.0 * x[i + 2])
fn plus_squares(x) = diff(x) + sum(x * x)
"""


@functools.cache
def mod() -> diffc.Module:
    return diffc.compile(textwrap.dedent(SRC), "deferred.dfl")


def deferrals(name, *args) -> list:
    """Per backward scan of name's gradient, its Deferral."""
    prog, _ = to_ir(mod().ast, name, tuple(type_of(a) for a in args), transform=("grad", (0,), True))
    found = []
    for e in all_eqns(prog.main.body):
        if e.prim is scan_p:
            p = e.params
            body, plan = accumulators(p["body"], 1, p["num_carry"])
            found.append(deferred_scatters(body, plan, 1 + p["num_carry"] + p["num_xs"]))
    return found


def deferred_terms(name, *args) -> list[int]:
    """Per backward scan of name's gradient, how many of its scatter-adds are deferred."""
    return [len(d.terms) for d in deferrals(name, *args)]


def test_affine_reads_are_deferred_but_the_first_and_computed_ones_are_not():
    assert deferred_terms("diff", np.ones(10)) == [1]  # x[i] in the loop, x[i + 1] deferred
    assert deferred_terms("wide", np.ones(10)) == [2]  # (2 * i // 2 + 1: a division, not affine)
    assert sorted(deferred_terms("stencil", np.ones((5, 6)))) == [0, 4]  # the rows' loop; the outer one
    assert deferred_terms("gathered", np.ones(10)) == [0]  # (k * 7) % n: not affine


def test_the_term_of_the_largest_offset_writes_each_element_first():
    # x[i + 1]'s cotangent is stored (ct[i + 1] first written in iteration i), x[i]'s deferred
    (d,) = deferrals("diff", np.ones(10))
    ((k, (j, c)),) = d.first_writes.items()
    assert c == 1 and (k, j) not in d.terms and len(d.terms) == 1
    assert [list(d.first_writes.values())[0][1] for d in deferrals("middle", np.ones(10))] == [2]
    assert [d.first_writes for d in deferrals("wide", np.ones(10))] == [{}]  # (a term not affine)
    assert all(d.first_writes == {} for d in deferrals("stencil", np.ones((5, 6))))  # (rank 2)


def generated_llvm(tmp_path, capsys, name, n) -> str:
    p = tmp_path / "p.dfl"
    p.write_text(textwrap.dedent(SRC) + f"\nfn main(x) = grad({name})(x)\n")
    np.save(tmp_path / "x.npy", np.ones(n))
    return show_llvm(capsys, p, "--arg", f"x={tmp_path / 'x.npy'}")["LLVM IR, as generated"]


def test_the_backward_loop_adds_the_deferred_terms_in_a_loop_of_their_own(tmp_path, capsys):
    raw = generated_llvm(tmp_path, capsys, "wide", 1000)
    assert '"dfr.body"' in raw and "alloca double, i32 256, align 64" in raw


def test_a_loop_adding_only_at_shifted_indices_computes_each_element_once(tmp_path, capsys):
    raw = generated_llvm(tmp_path, capsys, "diff", 1000)
    assert '"gather.body"' in raw and '"dfr.body"' not in raw


def diff_grad(x):
    d = np.diff(x)
    g = np.zeros_like(x)
    g[1:] += 2 * d
    g[:-1] -= 2 * d
    return g


def wide_grad(x):
    n = len(x) - 4
    g = np.zeros_like(x)
    for i in range(n):
        g[i] += x[i + 4]
        g[i + 4] += x[i]
        g[i + 2] -= 0.5
        g[i + 1] += 1.0
    return g


def stencil_grad(u):
    l = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4.0 * u[1:-1, 1:-1]
    g = np.zeros_like(u)
    c = 2 * l
    g[:-2, 1:-1] += c
    g[2:, 1:-1] += c
    g[1:-1, :-2] += c
    g[1:-1, 2:] += c
    g[1:-1, 1:-1] -= 4.0 * c
    return g


SIZES = [2, 3, DEFER_BLOCK - 1, DEFER_BLOCK, DEFER_BLOCK + 1, DEFER_BLOCK + 2, 3 * DEFER_BLOCK + 5]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("n", SIZES)
def test_values_around_the_block_size(n, dtype, tol):
    x = np.random.default_rng(n).standard_normal(n).astype(dtype)
    g = diffc.grad(mod().diff)(x)
    assert g.dtype == dtype
    np.testing.assert_allclose(g, diff_grad(x.astype(np.float64)), rtol=tol, atol=tol)
    if n > 4:
        np.testing.assert_allclose(diffc.grad(mod().wide)(x), wide_grad(x.astype(np.float64)), rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [4, 5, 6, DEFER_BLOCK + 3])
def test_the_elements_the_stored_term_does_not_write_are_zero(n):
    x = np.random.default_rng(n).standard_normal(n)
    want = np.zeros(n)
    for i in range(n - 4):
        want[i + 2] += x[i + 1] + 3.0
        want[i + 1] += x[i + 2]
    np.testing.assert_allclose(diffc.grad(mod().middle)(x), want, rtol=1e-12, atol=1e-12)


def test_an_accumulator_that_starts_from_another_term_is_added_to():
    x = np.random.default_rng(2).standard_normal(DEFER_BLOCK + 9)
    np.testing.assert_allclose(diffc.grad(mod().plus_squares)(x), diff_grad(x) + 2 * x, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 3), (5, 6), (4, DEFER_BLOCK + 3), (DEFER_BLOCK + 3, 4)])
def test_stencil_rows_around_the_block_size(shape):
    u = np.random.default_rng(1).standard_normal(shape)
    np.testing.assert_allclose(diffc.grad(mod().stencil)(u), stencil_grad(u), rtol=1e-12, atol=1e-12)


def test_infinities_and_nan_stay_where_they_are_added():
    x = np.arange(600.0)
    x[300] = np.inf
    g = diffc.grad(mod().diff)(x)
    want = diff_grad(x)
    assert np.array_equal(np.isnan(g), np.isnan(want)) and np.array_equal(g[~np.isnan(g)], want[~np.isnan(want)])
    x[300] = np.nan
    assert np.array_equal(np.isnan(diffc.grad(mod().diff)(x)), np.isnan(diff_grad(x)))


@pytest.mark.parametrize("n", [5, DEFER_BLOCK + 7])
def test_second_order_through_the_deferred_loop(n):
    # grad(diff)(x) = G x with G = 2 D^T D (symmetric): the gradient of sum((G x)^2) is 2 G G x
    x = np.random.default_rng(3).standard_normal(n)
    np.testing.assert_allclose(diffc.grad(mod().diff_squared)(x), 2 * diff_grad(diff_grad(x)), rtol=1e-10, atol=1e-10)

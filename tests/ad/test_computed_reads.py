"""Reads of a captured array at computed indices, in a comprehension or a `map`: the backward
loop adds each read's cotangent in place, into the one accumulator it carries, at the index
read (lower/loops.py, accumulators), however many reads the body makes. Before, a body that
read an array twice built two dense cotangents of the whole array per iteration and summed
them: a gradient quadratic in the size of the data (issue 12). The structure is checked, not
the time; the values against NumPy and finite differences."""

from __future__ import annotations

import functools
import textwrap

import numpy as np
import pytest

import diffc
from diffc.ir.walk import all_eqns
from diffc.lower.loops import accumulators, inplace_carries
from diffc.pipeline import to_ir
from diffc.prims.scan import scan_p
from diffc.runtime.values import type_of

from .fd import assert_close, numerical_grad

SRC = """
fn diff(x) = sum(for i in 0..len(x) - 1 => (x[i + 1] - x[i]) ** 2)
fn pool(x) {
    let s = shape(x);
    let p = for n in 0..s[0], c in 0..s[1], i in 0..s[2] // 2, j in 0..s[3] // 2 =>
        maximum(maximum(x[n, c, 2 * i, 2 * j], x[n, c, 2 * i + 1, 2 * j]),
                maximum(x[n, c, 2 * i, 2 * j + 1], x[n, c, 2 * i + 1, 2 * j + 1]));
    sum(p * p)
}
fn gathered(a, b) = sum(map(fn(k) => a[k] * b[(k * 7) % len(b)] + a[(k + 1) % len(a)], arange(len(a))))
fn stencil(u) {
    let s = shape(u);
    let l = for i in 1..s[0] - 1, j in 1..s[1] - 1 =>
        u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1] - 4.0 * u[i, j];
    sum(l * l)
}
fn same_element(x) = sum(for i in 0..len(x) => x[i] * x[i] + x[i])
fn nested_and_direct(x) = sum(for i in 0..len(x) => x[i] * sum(for j in 0..4 => x[(i + j) % len(x)]))
fn rows_and_dense(w, x) = sum(for i in 0..len(x) => sum(w[i] * x[i]) + sum(w * w) * x[i, 0])
fn windows_and_a_slice(x) = sum(map(fn(w) => w @ x[:4], windows(x, 4)) ** 2)
"""

RNG = np.random.default_rng(12)
ARGS = {
    "diff": (RNG.standard_normal(9),),
    "pool": (RNG.standard_normal((2, 3, 4, 6)),),
    "gathered": (RNG.standard_normal(7), RNG.standard_normal(5)),
    "stencil": (RNG.standard_normal((5, 6)),),
    "same_element": (RNG.standard_normal(6),),
    "nested_and_direct": (RNG.standard_normal(6),),
    "rows_and_dense": (RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))),
    "windows_and_a_slice": (RNG.standard_normal(11),),
}


@functools.cache
def mod() -> diffc.Module:
    return diffc.compile(textwrap.dedent(SRC), "computed_reads.dfl")


def gradient_ir(name):
    args = ARGS[name]
    prog, _ = to_ir(mod().ast, name, tuple(type_of(a) for a in args), transform=("grad", tuple(range(len(args))), True))
    return prog.main.body


@pytest.mark.parametrize("name", ARGS)
def test_every_read_is_added_in_place_into_one_accumulator(name):
    scans = [e for e in all_eqns(gradient_ir(name)) if e.prim is scan_p]
    assert scans
    for e in scans:
        nc = e.params["num_carry"]
        body = e.params["body"]
        inner, plan = accumulators(body, 1, nc)
        arrays = [k for k in range(nc) if body.params[1 + k].type.rank]
        # every array carry is an accumulator added to in place, or threaded through an inner
        # loop that adds to it in place: no dense cotangent of the array per iteration
        assert set(arrays) <= set(inplace_carries(body, 1, nc, plan)), name
        left = [f.prim.name for f in inner.eqns if f.prim.accumulate_as in ("index", "gather")]
        assert not left, f"{name}: {left} build a dense cotangent per iteration"


def test_a_loop_does_not_carry_the_cotangent_of_an_array_only_hoisted_reads_read():
    """`x[:4]` in a map over windows of x is computed before the loop (ir/hoist.py), and x is
    then no longer the loop's constant: the backward carries no cotangent of x's size through
    its steps (a copy of it per step made the gradient quadratic: 12 s at 262144). (`w @`
    keeps the map's backward a loop: ad/batch.py does not batch a product.)"""
    n = len(ARGS["windows_and_a_slice"][0])
    for e in all_eqns(gradient_ir("windows_and_a_slice")):
        if e.prim is scan_p:
            carries = e.params["body"].params[1 : 1 + e.params["num_carry"]]
            assert all(c.type.shape != (n,) for c in carries)


def all_eqns_in(e):
    """The loops nested in e's body."""
    return (f for f in all_eqns(e.params["body"]) if f.bodies())


def test_several_reads_are_one_term_each_in_the_order_they_are_added():
    # the stencil's innermost backward loop: five reads of u, five scatter-adds
    (e,) = [e for e in all_eqns(gradient_ir("stencil")) if e.prim is scan_p and not list(all_eqns_in(e))]
    _, plan = accumulators(e.params["body"], 1, e.params["num_carry"])
    assert [how[0] for how in plan[0]] == ["index"] * 5


def pool_grad(x):
    """The gradient of `pool` by NumPy: each window's cotangent goes to its first maximum in the
    order the program compares them (maximum sends a tie to its first operand)."""
    b, c, h, w = x.shape
    g = np.zeros_like(x)
    for i in range(h // 2):
        for j in range(w // 2):
            cands = [(2 * i, 2 * j), (2 * i + 1, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j + 1)]
            vals = np.stack([x[:, :, r, s] for r, s in cands])
            first = np.maximum(vals[0], vals[1]) >= np.maximum(vals[2], vals[3])
            k01 = np.where(vals[0] >= vals[1], 0, 1)
            k23 = np.where(vals[2] >= vals[3], 2, 3)
            k = np.where(first, k01, k23)
            m = np.take_along_axis(vals, k[None], 0)[0]
            for q, (r, s) in enumerate(cands):
                g[:, :, r, s] += np.where(k == q, 2 * m, 0.0)
    return g


def test_values_against_numpy():
    m = mod()
    x = ARGS["diff"][0]
    d = np.diff(x)
    want = np.zeros_like(x)
    want[1:] += 2 * d
    want[:-1] -= 2 * d
    assert_close(diffc.grad(m.diff)(x), want, 1e-12)
    x = ARGS["pool"][0]
    assert_close(diffc.grad(m.pool)(x), pool_grad(x), 1e-12)
    # ties: every window of zeros sends its cotangent (0) to its first element, no NaN
    z = np.zeros((1, 1, 2, 2))
    assert_close(diffc.grad(m.pool)(z), np.zeros_like(z), 0)
    x = ARGS["same_element"][0]
    assert_close(diffc.grad(m.same_element)(x), 2 * x + 1, 1e-12)


@pytest.mark.parametrize("name", ARGS)
def test_gradients_match_finite_differences(name):
    fn = getattr(mod(), name)
    args = ARGS[name]
    nums = tuple(range(len(args)))
    got = diffc.grad(fn, argnums=nums)(*args)
    assert_close(list(got), numerical_grad(fn, args, nums), 1e-6)


def test_an_infinite_element_read_elsewhere_leaves_the_others_finite():
    # x[0] = inf: the loss is inf, and only the cotangents that meet it are not finite
    x = np.array([np.inf, 1.0, 2.0, 4.0])
    g = diffc.grad(mod().diff)(x)
    assert np.all(np.isfinite(g[2:])) and g[2] == 2.0 * (2.0 - 1.0) - 2.0 * (4.0 - 2.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_and_single_element_comprehensions(dtype):
    for n in (0, 1):
        x = np.arange(n, dtype=dtype)
        g = diffc.grad(mod().diff)(x)
        assert g.dtype == dtype and g.shape == (n,) and not np.any(g)

"""A map whose body batches (ad/batch.py, Note [Batched maps]) has the backward of whole-array
ops: no loop, and for windows no [n, k] array of cotangents (a max's picks are read where
unwindows adds them). Checked: the structure, the memory, the values against NumPy (the same
bits for the picks of a max, ties, NaN and inf included), against the loop's backward (the
same program with batching off) on generated bodies, against finite differences at second
order, and the same bits on 1, 2 and 3 threads."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.native import module, on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc.ad import rules
from diffc.ir.walk import all_eqns
from diffc.lower.emit import PARALLEL_MIN
from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.prims.scan import scan_p
from diffc.prims.shape import UNWINDOWS_BLOCK_BYTES
from diffc.pytree import unflatten
from diffc.runtime.values import flatten_args, type_of

from .fd import assert_close, numerical_grad

SRC = """
fn wmax(x, c, k: i64) = sum(map(fn(w) => max(w), windows(x, k)) * c)
fn wmin(x, c, k: i64) = sum(map(fn(w) => min(w), windows(x, k)) * c)
fn conv(x, f) = sum(map(fn(w) => sum(w * f), windows(x, len(f))) ** 2)
fn rows(m, v) = sum(map(fn(r) => sum(tanh(r * v)) * mean(r), windows(m, 2)))
fn plain_rows(m, v) = sum(map(fn(r) => sum(tanh(r * v)) * mean(r), m))
fn same_each_window(xs, c) = sum(map(fn(w) => c, windows(xs, 3)) * xs[2:])
fn reshaped(x, f) = sum(map(fn(w) => sum(reshape(w, [2, 2]) * f), windows(x, 4)))
"""


def grad_ir(fn, *args):
    arrays, tree = flatten_args(args)
    types = unflatten(tree, [type_of(a) for a in arrays])
    nums = tuple(k for k, a in enumerate(args) if np.asarray(a).dtype.kind == "f")
    return to_ir(module(SRC).ast, fn, types, transform=("grad", nums, True), values=arrays)[0]


def picks(x, c, k, kind):
    """The gradient of wmax (wmin) by NumPy: each window's c at its first extreme (NaN first,
    as np.argmax), added in the windows' order."""
    w = np.lib.stride_tricks.sliding_window_view(x, k)
    nan = np.isnan(w)
    first = np.where(nan.any(axis=1), nan.argmax(axis=1), (w if kind == "max" else -w).argmax(axis=1))
    g = np.zeros_like(x)
    np.add.at(g, np.arange(len(w)) + first, c)
    return g


@pytest.mark.parametrize("kind", ["max", "min"])
@pytest.mark.parametrize("k", [1, 2, 4, 9, 17, 40])  # 17, 40: beyond the straight-line groups
@pytest.mark.parametrize("n", [40, UNWINDOWS_BLOCK_BYTES // 8 + 3, PARALLEL_MIN + 5])
def test_a_max_over_windows_sends_each_cotangent_to_the_first_extreme(kind, k, n):
    rng = np.random.default_rng(k * n)
    x = rng.integers(-3, 4, n).astype(np.float64)  # many ties
    x[rng.integers(0, n, 3)] = [np.nan, np.inf, -np.inf]
    c = rng.standard_normal(n - k + 1)
    fn = getattr(module(SRC), "w" + kind)
    results = on_each_count(lambda: diffc.grad(fn)(x, c, k))
    np.testing.assert_array_equal(results[0], picks(x, c, k, kind))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_f32_windows_and_windows_of_rows():
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, 300).astype(np.float32)
    c = rng.standard_normal(296).astype(np.float32)
    np.testing.assert_array_equal(diffc.grad(module(SRC).wmax)(x, c, 5), picks(x, c, 5, "max"))
    xs, f = rng.standard_normal((20, 3)), rng.standard_normal((4, 3))
    g = diffc.grad(module(SRC).conv, argnums=(0, 1))(xs, f)
    assert_close(list(g), numerical_grad(module(SRC).conv, (xs, f), (0, 1)))


def test_the_backward_is_whole_array_ops_with_no_loop():
    x, c = np.ones(64), np.ones(61)
    body = grad_ir("wmax", x, c, 4).main.body
    assert not [e for e in all_eqns(body) if e.prim is scan_p]
    assert [e.prim.name for e in body.eqns][-2:] == ["extreme_scatter", "unwindows"]
    m, v = np.ones((8, 5)), np.ones((2, 5))
    assert not [e for e in all_eqns(grad_ir("rows", m, v).main.body) if e.prim is scan_p]
    # over the rows of an array, the loop's backward is kept (Note [Batched maps])
    assert [e for e in all_eqns(grad_ir("plain_rows", m, v[0]).main.body) if e.prim is scan_p]


def arena_bytes(prog) -> int:
    ms = lower_program(prog)
    raw = str(ms.module)
    sizes = re.findall(r"alloca \[(\d+) x i8\]", raw) + re.findall(r'@"?malloc"?\(i64 (\d+)\)', raw)
    return ms.entry_arena + sum(int(s) for s in sizes)


@pytest.mark.parametrize("fn", ["wmax", "conv"])
def test_no_array_of_every_windows_cotangent_is_stored(fn):
    n, k = 100_000, 8
    args = (np.ones(n), np.ones(n - k + 1), k) if fn == "wmax" else (np.ones(n), np.ones(k))
    assert arena_bytes(grad_ir(fn, *args)) < n * k * 8 // 2


@pytest.mark.parametrize("fn", ["rows", "same_each_window", "reshaped", "conv"])
def test_gradients_agree_with_finite_differences(fn):
    rng = np.random.default_rng(1)
    args = {
        "rows": (rng.standard_normal((6, 5)), rng.standard_normal((2, 5))),
        "same_each_window": (rng.standard_normal(6), 0.7),
        "reshaped": (rng.standard_normal(9), rng.standard_normal((2, 2))),
        "conv": (rng.standard_normal(12), rng.standard_normal(3)),
    }[fn]
    f = getattr(module(SRC), fn)
    nums = tuple(range(len(args)))
    got = diffc.grad(f, argnums=nums)(*args)
    assert_close(list(got), numerical_grad(f, args, nums), what=fn)


def test_second_order_through_a_batched_map():
    m = diffc.compile(
        "fn loss(x, f) = sum(map(fn(w) => sum(tanh(w * f)), windows(x, 3)) ** 2)\n"
        "fn h(x, f) = sum(grad(loss)(x, f) ** 2)\n"
    )
    rng = np.random.default_rng(2)
    x, f = rng.standard_normal(10), rng.standard_normal(3)
    got = diffc.grad(m.h, argnums=(0, 1))(x, f)
    assert_close(list(got), numerical_grad(m.h, (x, f), (0, 1)))


# --- generated bodies: the batched backward against the loop's ---------------------------------

UNARY = ["tanh({})", "exp({}) * 0.5", "({} * {})", "abs({})", "sigmoid({})", "maximum({}, 0.1)", "-{}"]
BINARY = ["({} + {})", "({} * {})", "({} - {})", "({} / (1.5 + abs({})))"]
REDUCE = ["sum({})", "max({})", "min({})", "mean({})", "prod({})"]


@st.composite
def rows_exprs(draw, depth=3):
    """An expression of a row `w` and a captured vector `c` of its length, and scalars."""
    if depth == 0:
        return draw(st.sampled_from(["w", "c", "w", "0.5"]))
    kind = draw(st.sampled_from(["leaf", "unary", "binary"]))
    if kind == "leaf":
        return draw(rows_exprs(0))
    if kind == "unary":
        e = draw(rows_exprs(depth - 1))
        return draw(st.sampled_from(UNARY)).format(e, e)
    a, b = draw(rows_exprs(depth - 1)), draw(rows_exprs(depth - 1))
    return draw(st.sampled_from(BINARY)).format(a, b, b)


@st.composite
def bodies(draw):
    """A map's body: reductions of row expressions, combined with a scalar."""
    terms = [draw(st.sampled_from(REDUCE)).format(draw(rows_exprs())) for _ in range(draw(st.integers(1, 2)))]
    return " * ".join(terms) + draw(st.sampled_from(["", " + s", " * s"]))


def both_ways(src, args):
    """value_and_grad with the map's backward batched, then as the loop (batching off)."""
    got, made = [], []
    old = rules.Ctx.__dict__["batched"]

    def recording(*a):
        made.append(old.__func__(*a))
        return made[-1]

    cache = os.environ.get("DIFFC_CACHE")
    os.environ["DIFFC_CACHE"] = "0"  # (its keys do not say which way the backward was built)
    try:
        for batched in (staticmethod(recording), staticmethod(lambda *a: None)):
            rules.Ctx.batched = batched
            m = diffc.compile(src)
            got.append(diffc.value_and_grad(m.f, argnums=(0, 1, 2))(*args))
    finally:
        rules.Ctx.batched = old
        if cache is None:
            del os.environ["DIFFC_CACHE"]
        else:
            os.environ["DIFFC_CACHE"] = cache
    assert made and all(b is not None for b in made)  # (every body generated batches)
    return got


@settings(max_examples=40, deadline=None)
@given(body=bodies(), over=st.sampled_from(["windows(x, 4)", "windows(m, 2)"]), seed=st.integers(0, 2**32 - 1))
def test_generated_bodies_agree_with_the_loops_backward(body, over, seed):
    src = f"fn f(x, c, s) {{\n let m = reshape(x, [3, 4]);\n sum(map(fn(w) => {body}, {over}) ** 2)\n}}"
    rng = np.random.default_rng(seed)
    args = (rng.standard_normal(12), rng.standard_normal(4), float(rng.standard_normal()))
    (v1, g1), (v2, g2) = both_ways(src, args)
    np.testing.assert_allclose(v1, v2, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)

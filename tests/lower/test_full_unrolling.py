"""Loops of more than FULL_UNROLL_MAX iterations, and the inner loops of more than
FULL_UNROLL_MAX_MOVES of a nest that only moves data, are not unrolled before vectorisation
when the order of their arithmetic is fixed (See Note [Full unrolling] in lower/emit.py): their loop ID
says so, and lets the vector loop made of them be unrolled; loops whose sums LLVM may reorder
(reassoc, nsz) and short loops are left to LLVM as before. The values are those NumPy gives,
the same bits with the loop IDs or without them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support.native import ir_of

import diffc
from diffc.lower import emit, jit
from diffc.lower.llvm import lower_program

# a scan whose body has an elementwise loop (c * 0.5 + t), a sum (reassociable) and a max
SRC = """
fn f(c0, ts) {
    let (c, ys) = scan(fn(c, t) { let c2 = c * 0.5 + t; (c2, sum(c2) + max(c2)) }, c0, ts);
    (c, ys)
}
"""


def loop_attributes(text: str) -> dict[str, list[str]]:
    """The attributes (metadata strings) of each loop of LLVM IR text that has a loop ID, by
    the name of the block its back edge goes to; a loop ID that refers to a node of one
    string lists that string."""
    nodes = dict(re.findall(r"^!(\d+) = (?:distinct )?!\{(.*)\}$", text, re.M))
    strings = {k: m.group(1) for k, v in nodes.items() if (m := re.fullmatch(r' !"([\w.]+)" ', v))}
    out = {}
    for head, ident in re.findall(r'br label %"?([\w.]+)"?, !llvm\.loop !(\d+)', text):
        refs = re.findall(r"!(\d+)", nodes[ident])
        out[head] = [strings[r] for r in refs if r in strings]
    return out


def lowered(n: int) -> str:
    m = diffc.compile(SRC)
    return str(lower_program(ir_of(m, "f", np.ones(n), np.ones(3))).module)


def loops_of(text: str, prefix: str) -> list[list[str]]:
    return [attrs for head, attrs in loop_attributes(text).items() if head.startswith(prefix)]


def test_a_long_loop_in_a_fixed_order_is_not_unrolled_before_vectorisation():
    text = lowered(emit.FULL_UNROLL_MAX + 9)
    elementwise = loops_of(text, "ew")
    assert elementwise == [["llvm.loop.unroll.disable", "llvm.loop.vectorize.followup_vectorized"]]
    # the sum and the max, which LLVM vectorises as reductions in an order of its choosing,
    # keep no loop ID: fully unrolled or not, their bits are LLVM's as before
    assert not loops_of(text, "red")
    # the scan runs once per call: not unrolled at all (Note [Loops run once]), as before
    assert loop_attributes(text)["scan.head"] == ["llvm.loop.unroll.disable"]


def test_a_short_loop_is_left_to_llvm():
    text = lowered(emit.FULL_UNROLL_MAX)
    assert not loops_of(text, "ew") and not loops_of(text, "red")


def test_the_short_rows_of_a_copy_nest_are_not_unrolled_before_vectorisation():
    """A transpose inside a scan: a nest of copies whose inner loop of 4 only moves data; the
    inner loop of the elementwise nest beside it (5), which computes, is left to LLVM, and so
    are rows of FULL_UNROLL_MAX_MOVES (3)."""
    m = diffc.compile("""
fn f(c0, ts) {
    let (c, ys) = scan(fn(c, t) { let c2 = transpose(c) * t; (transpose(c2), sum(c2)) }, c0, ts);
    (c, ys)
}
""")
    text = str(lower_program(ir_of(m, "f", np.ones((5, 4)), np.ones(4))).module)
    loops = loop_attributes(text)
    followup = ["llvm.loop.unroll.disable", "llvm.loop.vectorize.followup_vectorized"]
    rows = [attrs for head, attrs in loops.items() if re.fullmatch(r"cp1\.head(\.\d+)?", head)]
    assert rows and all(attrs == followup for attrs in rows)
    assert re.search(r'icmp slt i64 %"cp1(\.\d+)?", 4', text)  # (the rows are 4 long)
    assert [attrs for head, attrs in loops.items() if head.startswith("ew1")] == []
    np.testing.assert_array_equal(
        m.f(np.arange(20.0).reshape(5, 4), np.full(4, 2.0))[0], np.arange(20.0).reshape(5, 4) * 16
    )
    short = str(lower_program(ir_of(m, "f", np.ones((5, emit.FULL_UNROLL_MAX_MOVES)), np.ones(4))).module)
    assert not [head for head in loop_attributes(short) if head.startswith("cp1")]


def optimised_loops(n: int) -> int:
    """How many loops are left in the optimised module of f for c0 of n elements."""
    return len(re.findall(r"!llvm\.loop !\d+", str(jit.optimise(lowered(n)))))


def test_the_vector_loop_is_still_unrolled(monkeypatch):
    """16 elements: two vector iterations of 8 (or four of 4), which LLVM unrolls in full as
    before: the vector loop is given none of the loop's attributes (the followup)."""
    loops = optimised_loops(16)
    monkeypatch.setattr(emit, "FULL_UNROLL_MAX", 10**9)  # every loop as LLVM would have it
    assert loops == optimised_loops(16)


@pytest.mark.parametrize("n", [1, 8, 9, 16, 17, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_are_numpy_s_and_the_same_bits_without_the_loop_ids(monkeypatch, n, dtype):
    rng = np.random.default_rng(n)
    c0 = rng.standard_normal(n).astype(dtype)
    if n > 2:
        c0[:3] = [0.0, -0.0, np.inf if n % 2 else np.nan]
    ts = np.array([0.5, -1.5, 2.0], dtype)
    got = diffc.compile(SRC).f(c0, ts)
    c, ys = c0.copy(), []
    for t in ts:
        c = c * dtype(0.5) + t
        ys.append(np.sum(c) + np.max(c))
    np.testing.assert_array_equal(got[0], c)
    np.testing.assert_allclose(got[1], ys, rtol=1e-5 if dtype == np.float32 else 1e-12)
    monkeypatch.setattr(emit, "FULL_UNROLL_MAX", 10**9)  # every loop as LLVM would have it
    before = diffc.compile(SRC).f(c0, ts)
    for x, y in zip(got, before):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()

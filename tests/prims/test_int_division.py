"""Integer `//` and `%` at the edges where LLVM's sdiv/srem are undefined (and x86 traps with
SIGFPE): INT64_MIN // -1 wraps to INT64_MIN and its remainder is 0, division by zero gives 0,
as NumPy does, whether the code runs or the operation is folded while compiling, for scalars,
arrays (vectorised loops), broadcasting and comprehensions. Also the other integer operations
that could trap: `abs` and `-` of INT64_MIN wrap, `**` with a negative exponent."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from support.native import module

MIN, MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max
EDGES = [MIN, MIN + 1, -7, -2, -1, 0, 1, 2, 7, MAX - 1, MAX]
A, B = (np.array(v, dtype=np.int64) for v in zip(*itertools.product(EDGES, EDGES)))

PROGRAMS = module("""
    fn both(a, b) = (a // b, a % b)
    fn each(a, b) = (for i in 0..len(a) => a[i] // b[i], for i in 0..len(a) => a[i] % b[i])
    fn rows(a, b) = (reshape(a, [len(a), 1]) // b, reshape(a, [len(a), 1]) % b)
    fn unary(a) = (abs(a), -a, a ** -1, a ** -2)
""")


def want(a, b):
    with np.errstate(all="ignore"):
        return np.floor_divide(a, b), np.mod(a, b)


def test_arrays_wrap_as_numpy():
    for got, w in zip(PROGRAMS.both(A, B), want(A, B)):
        np.testing.assert_array_equal(got, w)


def test_scalars_wrap_as_numpy():
    for a, b in zip(A.tolist(), B.tolist()):
        assert PROGRAMS.both(a, b) == tuple(int(x) for x in want(np.int64(a), np.int64(b))), (a, b)


def test_comprehensions_and_broadcasting_wrap_as_numpy():
    for got, w in zip(PROGRAMS.each(A, B), want(A, B)):
        np.testing.assert_array_equal(got, w)
    edges = np.array(EDGES, dtype=np.int64)
    for got, w in zip(PROGRAMS.rows(edges, edges), want(edges[:, None], edges)):
        np.testing.assert_array_equal(got, w)


@pytest.mark.parametrize("a, b", [(MIN, -1), (MIN, 0), (7, 0), (-7, -1), (MIN + 1, -1), (MIN, 2)])
def test_folded_agrees_with_run_time(a, b):
    """The same operation on compile-time constants is folded: the same numbers."""
    lit = {v: f"({v + 1} - 1)" if v == MIN else str(v) for v in (a, b)}
    folded = PROGRAMS.evaluate(f"({lit[a]} // {lit[b]}, {lit[a]} % {lit[b]})")
    assert folded == PROGRAMS.both(a, b) == tuple(int(x) for x in want(np.int64(a), np.int64(b)))


def test_folded_arrays_agree_with_numpy():
    a, b = [MIN, 7, -7, 5, MIN], [-1, 0, 2, -1, 0]
    lits = [", ".join(f"({v + 1} - 1)" if v == MIN else str(v) for v in xs) for xs in (a, b)]
    folded = PROGRAMS.evaluate(f"([{lits[0]}] // [{lits[1]}], [{lits[0]}] % [{lits[1]}])")
    for got, w in zip(folded, want(np.array(a), np.array(b))):
        np.testing.assert_array_equal(got, w)


def test_unary_edges_wrap():
    edges = np.array(EDGES, dtype=np.int64)
    got = PROGRAMS.unary(edges)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got[0], np.abs(edges))
        np.testing.assert_array_equal(got[1], -edges)
    np.testing.assert_array_equal(got[2], np.where(edges == 1, 1, np.where(edges == -1, -1, 0)))
    np.testing.assert_array_equal(got[3], np.where(np.abs(edges) == 1, 1, 0))
    assert PROGRAMS.unary(int(MIN))[:2] == (MIN, MIN)


def test_cli_does_not_trap(tmp_path):
    """The reproducer of issue 9, in its own process: SIGFPE killed it (exit 136)."""
    prog = tmp_path / "div.dfl"
    prog.write_text("fn main(a, b) = (a // b, a % b)\n")
    args = ["--arg", f"a={MIN}", "--arg", "b=-1"]
    run = subprocess.run(
        [sys.executable, "-m", "diffc", "run", str(prog), *args], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [f"({MIN},", "0)"]

"""What lowering does not store: a reduced comprehension is never materialised, windows are a
view (a convolution does not copy them out), and an elementwise chain feeding a reduction needs
no temporaries. Measured by the arena each native function needs (the entry function's, which
the runtime provides, plus any `alloca [N x i8]` or `malloc(N)` in the unoptimised LLVM IR of the
others), for inputs of N = 100000 floats."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support.native import module

from diffc.lower.llvm import lower_program
from diffc.pipeline import to_ir
from diffc.pytree import unflatten
from diffc.runtime.values import flatten_args, type_of

N = 100_000
FLOAT = 8

PROGRAMS = module("""
    fn reduced(x) = sum(for i in 0..len(x) => x[i] * 2.0)
    fn reduced_2d(a, b) = for i in 0..shape(a)[0] => sum(for j in 0..shape(a)[1] => a[i, j] * b[j])
    fn stored(x) {
        let y = for i in 0..len(x) => x[i] * 2.0;
        sum(y) + y[0]
    }
    fn conv(x, k) = map(fn(w) => sum(w * k), windows(x, len(k)))
    fn chain(a, b, w) = sum((a - b) ** 2 * w)
""")


def arena_bytes(fn: str, *args) -> int:
    """The bytes of arena the unoptimised LLVM IR of `fn` allocates, for these arguments."""
    arrays, tree = flatten_args(args)
    prog, _ = to_ir(PROGRAMS.ast, fn, unflatten(tree, [type_of(a) for a in arrays]))
    ms = lower_program(prog)
    raw = str(ms.module)
    sizes = re.findall(r"alloca \[(\d+) x i8\]", raw) + re.findall(r'@"?malloc"?\(i64 (\d+)\)', raw)
    return ms.entry_arena + sum(int(s) for s in sizes)


rng = np.random.default_rng(3)
X = rng.normal(size=N)


def test_a_stored_comprehension_takes_memory():
    """The measurement works: keeping the comprehension needs its N floats."""
    assert arena_bytes("stored", X) >= N * FLOAT
    assert PROGRAMS.stored(X) == pytest.approx(2 * X.sum() + 2 * X[0], rel=1e-12)


def test_a_reduced_comprehension_is_not_materialised():
    assert arena_bytes("reduced", X) < N * FLOAT // 10
    assert PROGRAMS.reduced(X) == pytest.approx(2 * X.sum(), rel=1e-12)


def test_a_nested_reduced_comprehension_stores_only_its_result():
    a, b = rng.normal(size=(100, 1000)), rng.normal(size=1000)
    assert arena_bytes("reduced_2d", a, b) < a.size * FLOAT // 10
    np.testing.assert_allclose(PROGRAMS.reduced_2d(a, b), a @ b, rtol=1e-11)


def test_windows_are_not_copied_out():
    k = rng.normal(size=50)
    out_bytes = (N - 50 + 1) * FLOAT
    assert arena_bytes("conv", X, k) < 2 * out_bytes  # the windows themselves would be 50x that
    want = np.convolve(X, k[::-1], mode="valid")
    np.testing.assert_allclose(PROGRAMS.conv(X, k), want, rtol=1e-10, atol=1e-10)


def test_an_elementwise_chain_into_a_reduction_needs_no_temporaries():
    b, w = rng.normal(size=N), rng.normal(size=N)
    assert arena_bytes("chain", X, b, w) < N * FLOAT // 10
    assert PROGRAMS.chain(X, b, w) == pytest.approx(((X - b) ** 2 * w).sum(), rel=1e-10)

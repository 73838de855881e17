"""A copy between contiguous buffers of COPY_MIN_BYTES or more, too small for threads, is one
llvm.memcpy, from COPY_LOOP_MIN_BYTES a call of the module's copy loop, never glibc's memcpy,
and one of PARALLEL_MIN elements or more a copy of each piece on the threads (Note [Copies] in
lower/emit.py); smaller ones and strided ones stay loops. The values are the same either way,
bit for bit (NaN payloads, -0.0, bools, INT64_MIN), on any count of threads."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support.native import on_each_count

import diffc
from diffc.lower.emit import COPY_LOOP_MIN_BYTES, COPY_MIN_BYTES, COPY_SYMBOL, PARALLEL_MIN
from diffc.pipeline import llvm_text
from diffc.typesys import DType, TensorType

# a scan whose carry is copied into its output at every step, and a value returned twice
SOURCE = """
fn steps(x, n) {
    let (last, all) = scan(fn(c, t) { let d = c * 1.0; (d, d) }, x, for k in 0..n => 0.0);
    (last, all)
}
fn twice(x) = (x, x)
"""


def lowered(name: str, *types) -> str:
    return llvm_text(diffc.compile(SOURCE).ast, name, types)[0]


@pytest.mark.parametrize(
    ("size", "loop"),
    [(COPY_LOOP_MIN_BYTES // 8 - 1, False), (COPY_LOOP_MIN_BYTES // 8, True), (PARALLEL_MIN - 1, True)],
)
def test_large_copies_call_the_modules_copy_loop_not_memcpy(size, loop):
    """From COPY_LOOP_MIN_BYTES, glibc's memcpy would use `rep movsb`, 7-11 times slower on
    AMD cores for a destination 1-63 bytes past its source modulo 4096 (a slice's cotangent):
    the copy is the module's own loop, vectorised, which LLVM does not make a memcpy again."""
    raw, optimised, assembly = llvm_text(diffc.compile(SOURCE).ast, "twice", (TensorType(DType.F64, (size,)),))
    assert (f'@"{COPY_SYMBOL}"' in raw) == loop
    assert ("llvm.memcpy" in raw) != loop
    if loop:
        assert "memcpy" not in assembly and "movsb" not in assembly


@pytest.mark.parametrize(
    ("dtype", "size", "one_call"),
    [
        (DType.F64, COPY_MIN_BYTES // 8, True),
        (DType.F64, COPY_MIN_BYTES // 8 - 1, False),
        (DType.F32, COPY_MIN_BYTES // 4, True),
        (DType.BOOL, COPY_MIN_BYTES, True),
        (DType.F64, PARALLEL_MIN, True),
        (DType.BOOL, PARALLEL_MIN + 1, True),
    ],
)
def test_which_copies_are_one_call(dtype, size, one_call):
    text = lowered("twice", TensorType(dtype, (size,)))
    assert ("llvm.memcpy" in text or f'@"{COPY_SYMBOL}"' in text) == one_call


def test_a_copy_for_the_threads_is_one_copy_of_each_piece():
    text = lowered("twice", TensorType(DType.F64, (PARALLEL_MIN,)))
    pieces = re.findall(r'^define internal void @"[^"]*\.par[^"]*"\(.*?^\}', text, re.M | re.S)
    assert len(pieces) == 2  # each result a copy of x
    for piece in pieces:
        assert f'@"{COPY_SYMBOL}"' in piece
        assert "phi" not in piece  # no loop: the piece is one call of the copy loop


def test_strided_copy_is_a_loop():
    m = diffc.compile("fn f(x) = (x[:, ::2], 1.0)\n")
    text = llvm_text(m.ast, "f", (TensorType(DType.F64, (64, 64)),))[0]
    assert "llvm.memcpy" not in text


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.bool_])
@pytest.mark.parametrize(
    "size", [COPY_MIN_BYTES // 8 - 1, COPY_MIN_BYTES // 8, 1000, COPY_LOOP_MIN_BYTES // 4 + 3, 9000, PARALLEL_MIN + 5]
)
def test_copies_keep_every_bit(dtype, size):
    rng = np.random.default_rng(size)
    if dtype is np.bool_:
        x = rng.random(size) < 0.5
    elif dtype is np.int64:
        x = rng.integers(-(2**62), 2**62, size)
        x[0] = np.iinfo(np.int64).min
    else:
        x = rng.standard_normal(size).astype(dtype)
        x[:3] = [np.nan, -0.0, np.inf]
        bits, nan = (np.uint64, 0x7FF0000000000005) if dtype is np.float64 else (np.uint32, 0x7F800005)
        x.view(bits)[3] = nan  # a NaN with a payload
    for a, b in on_each_count(lambda: diffc.compile(SOURCE).twice(x)):
        for y in (a, b):
            assert y.dtype == x.dtype and y.tobytes() == x.tobytes()


@pytest.mark.parametrize("size", [3, COPY_MIN_BYTES // 8, 300])
def test_scan_carries_copied_each_step(size):
    x = np.linspace(-1.0, 1.0, size)
    last, all_ = diffc.compile(SOURCE).steps(x, 5)
    np.testing.assert_array_equal(last, x)
    np.testing.assert_array_equal(all_, np.tile(x, (5, 1)))
    m = diffc.compile(SOURCE + "fn s(x) { let (l, a) = steps(x, 4); sum(l) + sum(a * a) }\n")
    np.testing.assert_allclose(diffc.grad(m.s)(x), 1.0 + 8.0 * x, rtol=1e-13)

"""Large results are made on memory that a later result of the same size reuses once no array
made on it is alive (Note [Result memory] in runtime/call.py): never while one is, or a view of
one, on either path of a call, from many threads at once, and within its bound."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import in_threads

import diffc
from diffc.runtime.call import RESULTS, ResultMemory
from diffc.typesys import TensorType, f64

SRC = """
fn double(x) = (x * 2.0, sum(x))
fn halves(x) = (x / 2.0, f32(x), x + 1.0)
"""
N = ResultMemory.MIN_BYTES // 8  # doubles: a result just large enough


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def test_memory_is_reused_once_no_array_holds_it(m):
    x = np.arange(float(N))
    a, s = m.double(x)
    first = a.ctypes.data
    np.testing.assert_array_equal(a, 2 * x)
    b, _ = m.double(x)  # a is alive: other memory
    assert b.ctypes.data != first
    row = a[::2]
    del a
    c, _ = m.double(x + 1.0)  # a view of a holds it: other memory again
    assert first not in (c.ctypes.data, b.ctypes.data)
    np.testing.assert_array_equal(row, 2 * x[::2])  # (untouched)
    del row, b, c
    d, _ = m.double(x + 3.0)
    assert d.ctypes.data == first and d.base.nbytes == d.nbytes  # free now: the same buffer
    np.testing.assert_array_equal(d, 2 * (x + 3.0))
    assert d.flags.c_contiguous and d.flags.writeable and d.flags.aligned and d.dtype == np.float64


def test_the_general_path_reuses_it_too(m):
    x = np.arange(float(N))
    a = m.halves(x)[0]
    first = a.ctypes.data
    del a
    y = m.halves(x.tolist())[0]  # a list: the general path
    assert y.ctypes.data == first
    np.testing.assert_array_equal(y, x / 2.0)
    assert m.halves(x[:4])[0].base is None  # (a small result: np.empty's)


def test_results_of_each_dtype_and_size(m):
    x = np.linspace(-3.0, 3.0, N)
    for _ in range(3):  # (the memory of the results before, reused)
        h, n, p = m.halves(x)
        assert (h.dtype, n.dtype, p.dtype) == (np.float64, np.float32, np.float64)
        np.testing.assert_array_equal(h, x / 2.0)
        np.testing.assert_array_equal(n, x.astype(np.float32))
        np.testing.assert_array_equal(p, x + 1.0)
        assert len({h.ctypes.data, n.ctypes.data, p.ctypes.data}) == 3


def test_calls_from_many_threads(m):
    errors = []

    def work(k):
        x = np.full(N, float(k))
        for _ in range(50):
            a, s = m.double(x)
            if not (np.all(a == 2.0 * k) and s == k * N):
                errors.append(k)

    in_threads(work, [(k,) for k in range(6)])
    assert not errors


def test_the_memory_kept_is_bounded():
    memory = ResultMemory()
    memory.MAX_BYTES = 4 * ResultMemory.MIN_BYTES
    held = [memory.maker(TensorType(f64, (N,)))() for _ in range(6)]  # the last two are not kept
    assert memory._bytes == memory.MAX_BYTES
    del held[:2]
    other = memory.maker(TensorType(f64, (2 * N,)))()  # no room: the two free buffers are let go
    assert memory._bytes == memory.MAX_BYTES and other.nbytes == 2 * ResultMemory.MIN_BYTES
    assert RESULTS is not memory
    memory = ResultMemory()  # and so many buffers of one size
    many = [memory.maker(TensorType(f64, (N,)))() for _ in range(ResultMemory.PER_SIZE + 2)]
    assert len(memory._buffers[N * 8]) == ResultMemory.PER_SIZE and len({a.ctypes.data for a in many}) == len(many)


def test_small_results_cost_what_np_empty_does():
    assert RESULTS.maker(TensorType(f64, (N - 1,))).func is np.empty

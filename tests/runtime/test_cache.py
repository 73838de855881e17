"""The compile cache: a function is compiled once per argument signature (dtypes, shapes and
the structure of records and tuples); calls with a signature seen before reuse the code."""

from __future__ import annotations

import numpy as np
import pytest

import diffc
from diffc import api


@pytest.fixture
def counted(monkeypatch):
    """A fresh module whose compilations are counted."""
    calls = []
    real = api.compile_native

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "compile_native", counting)
    m = diffc.compile("fn f(x) = x * 2\nfn g(p) = p.a + p.b\nfn h() = 1.0")
    return m, calls


def test_same_signature_compiles_once(counted):
    m, calls = counted
    m.f(np.ones(3))
    m.f(np.zeros(3))
    m.f(np.arange(3.0))
    assert len(calls) == 1 and m.f.num_compiled == 1


def test_new_shapes_and_dtypes_compile_again(counted):
    m, calls = counted
    m.f(np.ones(3))
    m.f(np.ones(4))
    m.f(np.ones((3, 1)))
    m.f(np.ones(3, np.float32))
    m.f(np.ones(3, np.int64))
    assert m.f.num_compiled == 5 and len(calls) == 5
    m.f(np.ones(4))
    m.f(np.ones(3, np.int32))  # converted to i64: the i64[3] code is reused
    assert m.f.num_compiled == 5 and len(calls) == 5


def test_scalars_of_one_kind_share_code(counted):
    m, calls = counted
    assert m.f(1.5) == 3.0
    assert m.f(np.float64(2.5)) == 5.0
    assert m.f(7) == 14
    assert m.f(np.int64(8)) == 16
    assert m.f.num_compiled == 2


def test_record_structure_is_part_of_the_signature(counted):
    m, calls = counted
    assert m.g({"a": 1.0, "b": 2.0}) == 3.0
    assert m.g({"b": 5.0, "a": 1.0}) == 6.0
    assert m.g.num_compiled == 1
    np.testing.assert_array_equal(m.g({"a": np.ones(2), "b": 1.0}), [2.0, 2.0])
    assert m.g.num_compiled == 2


def test_functions_and_modules_cache_separately(counted):
    m, calls = counted
    assert m.f is m.f and m.function("f") is m.f
    m.f(1.0)
    m.h()
    m.h()
    assert m.f.num_compiled == 1 and m.h.num_compiled == 1 and len(calls) == 2
    other = diffc.compile("fn f(x) = x * 2")
    other.f(1.0)
    assert len(calls) == 3

"""Mistakes in calls of the Python API are UsageErrors that name the culprit, never a bare
TypeError or ValueError from diffc's insides, and never a value silently changed (a uint64
above 2**63 - 1 used to wrap)."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import module

import diffc
from diffc.errors import DiffcError, InternalError, UsageError

API = module("""
    fn ident(x) = x
    fn rec(r) = r.a
    fn two(a, b) = sum(a) * b
""")


@pytest.mark.parametrize("source", [123, None, b"fn main() = 1", ["fn main() = 1"]])
def test_compile_takes_text(source):
    with pytest.raises(UsageError, match="takes the program's text as a str"):
        diffc.compile(source)


def test_load_takes_a_path():
    with pytest.raises(UsageError, match="takes the path"):
        diffc.load(5)


@pytest.mark.parametrize("arg", [{1: 2.0}, {"a": 1.0, 2: 3.0}])
def test_record_keys_must_be_strings(arg):
    with pytest.raises(UsageError, match="field names must be strings"):
        API.rec(arg)


@pytest.mark.parametrize("argnums", ["a", 1.0, True, (0, "b")])
def test_argnums_must_be_ints(argnums):
    with pytest.raises(UsageError, match="expected an int or a tuple of ints"):
        diffc.grad(API.two, argnums=argnums)


@pytest.mark.parametrize(
    "argnums, message",
    [(2, "argument 2, but the function is called with 2"), (-1, "argument -1"), ((0, 0), "at most once")],
)
def test_argnums_name_distinct_arguments(argnums, message):
    with pytest.raises(DiffcError, match=message) as info:
        diffc.grad(API.two, argnums=argnums)(np.ones(2), 1.0)
    assert not isinstance(info.value, InternalError) and info.value.location is not None


def test_argnums_as_a_list_or_numpy_int():
    assert diffc.grad(API.two, argnums=[1])(np.ones(2), 1.0) == (2.0,)
    assert diffc.grad(API.two, argnums=np.int64(1))(np.ones(2), 1.0) == 2.0


@pytest.mark.parametrize(
    "value, message",
    [
        (np.array([2**64 - 1], np.uint64), "uint64 values that i64 cannot hold exactly"),
        (np.uint64(2**63), "does not fit"),
        (np.array([1.0], np.longdouble) / 3, "float128 values that f64 cannot hold exactly"),
        (np.ones(2, complex), "complex128"),
        (1j, "complex128"),
        (np.array([1, "a"], object), "object"),
        ("abc", "<U3"),
        (np.array(["2020-01-01"], "datetime64[D]"), "datetime64"),
    ],
)
def test_unsupported_values_name_the_argument(value, message):
    with pytest.raises(UsageError, match="argument 0 \\(`x`\\)") as info:
        API.ident(value)
    assert message in info.value.message


@pytest.mark.parametrize(
    "value",
    [np.array([5, 2**63 - 1], np.uint64), np.array([1.5, 2.0**80, np.nan], np.longdouble), np.array([0.5], np.float16)],
)
def test_values_that_convert_exactly_are_accepted(value):
    got = API.ident(value)
    assert np.array_equal(got, value.astype(got.dtype), equal_nan=True)
    assert np.array_equal(got.astype(value.dtype), value, equal_nan=True)


def test_arguments_by_name_are_a_usage_error():
    m = diffc.compile("fn f(x, y) = x + y\nfn g(a) = a * 2.0")
    for _ in range(2):  # the general path, then the direct entry once the signature is compiled
        assert m.f(1.0, 2.0) == 3.0
        np.testing.assert_array_equal(m.g(np.ones(2)), [2.0, 2.0])
        with pytest.raises(UsageError, match="`f` takes its arguments by position, got `y=`"):
            m.f(1.0, y=2.0)
        with pytest.raises(UsageError, match="`g` takes its arguments by position, got `a=`"):
            m.g(a=np.ones(2))

"""The direct entry (lower/pyentry.py): the same results as the general path, which it hands
whatever it was not compiled for, and failures, raised there as located errors."""

from __future__ import annotations

import ctypes
import functools
import math
import weakref

import numpy as np
import pytest
from support.native import module

import diffc
from diffc.errors import BoundsError, RecursionDepthError, UsageError
from diffc.lower.pyentry import PYALLOCS_SYMBOL

M = module("""
    fn mix(x, n, b) = (x * 2.0, (n + 1, not b), if b { x } else { -x })
    fn one(x) = x / 3.0
    fn narrow(x) = f32(x)
    fn pick(x, i) = [x, 2.0 * x][i]
    fn rec(n) = if n == 0 { 0 } else { 1 + rec(n - 1) }
    fn record(x) = {a: x}
    fn loud(x) { print(x); x }
    fn newton(a) {
        let (x, n) = while(fn(s) => abs(s.0 * s.0 - a) >= 1e-12 and s.1 < 100,
                           fn(s) => (0.5 * (s.0 + a / s.0), s.1 + 1), (a, 0));
        x
    }
""")


GENERAL = "the general path"


def direct(fn, *args):
    """A direct entry of fn's signature for args, compiled by a first call, whose general path
    says it was taken."""
    fn(*args)
    native = fn._fast[fn._fast_key(args)[0]][0]
    own, native._direct = native._direct, None
    try:
        return native.direct(lambda *a: GENERAL)
    finally:
        native._direct = own


def test_numbers_in_tuples_out():
    d = direct(M.mix, 1.5, 3, True)
    assert d(1.5, 3, True) == (3.0, (4, False), 1.5)
    assert d(-2.0, -(2**63), False) == (-4.0, (-(2**63) + 1, True), 2.0)
    assert M.mix(0.25, 7, False) == (0.5, (8, True), -0.25)


def test_results_have_python_types():
    assert type(direct(M.one, 1.0)(1.0)) is float
    r = direct(M.mix, 1.0, 1, True)(1.0, 1, True)
    assert [type(r[0]), type(r[1][0]), type(r[1][1])] == [float, int, bool]
    assert direct(M.narrow, 0.1)(0.1) == float(np.float32(0.1))


@pytest.mark.parametrize(
    "args",
    [(1, 3, True), (1.5, 3.0, True), (1.5, 3, 1), (1.5, True, True), (np.float32(1.5), 3, True), (1.5, 3), ()],
)
def test_other_argument_types_are_not_taken(args):
    assert direct(M.mix, 1.5, 3, True)(*args) == GENERAL


def test_an_int_too_big_is_not_taken_and_the_general_path_says_why():
    d = direct(M.mix, 1.5, 3, True)
    assert d(1.5, 2**63, True) == GENERAL
    with pytest.raises(UsageError, match="does not fit in a 64-bit int"):
        M.mix(1.5, 2**63, True)


def test_a_signature_of_ints_compiles_its_own_function():
    assert M.one(3.0) == 1.0
    assert M.one(3) == 1.0  # int -> its own specialisation through the general path
    assert M.one.num_compiled == 2


def test_failures_come_back_as_located_errors():
    assert direct(M.pick, 1.0, 1)(1.0, 1) == 2.0
    assert direct(M.pick, 1.0, 1)(1.0, 5) == GENERAL
    with pytest.raises(BoundsError, match="index 5 is out of bounds"):
        M.pick(1.0, 5)
    assert M.rec(10) == 10
    with pytest.raises(RecursionDepthError):
        M.rec(100_000)
    assert M.rec(3) == 3  # the depth counter starts again at each call


def test_not_made_for_prints():
    M.loud(1.0)
    assert all(native.direct(print) is None for native, _ in M.loud._cache.values())


def test_records_come_back_as_tuples_which_the_api_makes_dicts():
    assert direct(M.record, 1.5)(1.5) == (1.5,)
    assert M.record._entry == M.record._general  # (it would return the tuple)
    assert [M.record(2.5) for _ in range(3)] == [{"a": 2.5}] * 3


A = module("""
    fn scale(x, s) = (x * s, sum(x))
    fn pick(x: f64[3], i) = x[i]
    fn kinds(a, b, c) = (f32(a) * 2.0, b + 1, not c, f32(a))
    fn empty(x) = x * 2.0
""")


def test_arrays_in_and_out():
    x = np.arange(6.0).reshape(2, 3)
    d = direct(A.scale, x, 2.0)
    y, total = d(x, 2.0)
    np.testing.assert_array_equal(y, x * 2.0)
    assert total == 15.0 and type(y) is np.ndarray and y.flags.c_contiguous and y.flags.owndata
    y2, _ = d(x, 3.0)
    assert y2 is not y and (y == x * 2.0).all()  # each call makes new arrays
    a, b, c = np.float32([1.5, 2.5]), np.array([1, 2]), np.array([True, False])
    r = direct(A.kinds, a, b, c)(a, b, c)
    assert [v.dtype for v in r] == [np.float32, np.int64, np.bool_, np.float32]
    np.testing.assert_array_equal(r[2], [False, True])
    e = np.ones((0, 3))
    assert direct(A.empty, e)(e).shape == (0, 3)


@pytest.mark.parametrize(
    "arg",
    [
        np.arange(12.0).reshape(2, 6)[:, ::2],  # not contiguous
        np.arange(6.0).reshape(3, 2).T,  # Fortran order
        np.arange(6, dtype=np.int64).reshape(2, 3),  # another dtype
        np.arange(8.0).reshape(2, 4),  # another shape
        np.arange(6.0),  # another rank
        np.arange(6.0).reshape(2, 3).view(type("Sub", (np.ndarray,), {})),  # a subclass
        [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]],  # a list
    ],
)
def test_other_arrays_take_the_general_path(arg):
    x = np.arange(6.0).reshape(2, 3)
    assert direct(A.scale, x, 2.0)(arg, 2.0) == GENERAL
    got, total = A.scale(arg, 2.0)  # the general path copies, or compiles another signature
    np.testing.assert_array_equal(got, np.asarray(arg) * 2.0)


def test_no_references_are_leaked():
    import sys

    x = np.arange(3.0)
    d = direct(A.pick, x, 1)
    before = sys.getrefcount(x)
    for _ in range(1000):
        d(x, 1)
        assert d(x, 7) == GENERAL  # a bounds failure releases nothing it does not own
    assert sys.getrefcount(x) == before
    with pytest.raises(BoundsError):
        A.pick(x, 7)


def allocating(fn, args, make):
    """fn's direct entry for args, whose k-th result array is made by make(k) (the others, the
    numbers, have none)."""
    d = direct(fn, *args)
    native = fn._fast[fn._fast_key(args)[0]][0]
    table = native.compiled.global_address(PYALLOCS_SYMBOL)
    for k, alloc in enumerate(native._allocators):
        if alloc is not None:
            native._allocators[k] = functools.partial(make, k)  # (kept alive by native)
            ctypes.c_void_p.from_address(table + k * ctypes.sizeof(ctypes.c_void_p)).value = id(native._allocators[k])
    return d


R = module("""
    fn three(x: f64[3], i) = (x * 2.0, x[i], x + 1.0, x - 1.0)
""")


@pytest.mark.parametrize("failing", [0, 2, 3])
def test_a_result_array_not_made_releases_those_made_before(failing):
    made = []

    def make(k):
        if k == failing:
            raise MemoryError
        a = np.empty(3)
        made.append(weakref.ref(a))
        return a

    x = np.arange(3.0)
    d = allocating(R.three, (x, 1), make)
    assert d(x, 1) == GENERAL
    assert len(made) == [0, 1, 2][[0, 2, 3].index(failing)] and all(r() is None for r in made)
    assert d(x, 1) == GENERAL  # no Python error left set: the next call runs as usual


def test_results_of_a_failed_call_are_released():
    made = []

    def make(k):
        a = np.empty(3)
        made.append(weakref.ref(a))
        return a

    x = np.arange(3.0)
    d = allocating(R.three, (x, 1), make)
    got = d(x, 1)
    np.testing.assert_array_equal(got[2], x + 1.0)
    assert d(x, 7) == GENERAL  # a bounds failure, after the three arrays were made
    del got
    assert len(made) == 6 and all(r() is None for r in made)


def test_gradients_take_the_direct_path():
    vg = diffc.value_and_grad(M.newton)
    value, g = vg(2.0)
    assert value == pytest.approx(math.sqrt(2.0), rel=1e-15)
    assert g == pytest.approx(0.5 / math.sqrt(2.0), rel=1e-12)
    assert type(vg._entry).__name__ == "builtin_function_or_method"  # after the first call
    assert vg(3.0)[0] == pytest.approx(math.sqrt(3.0), rel=1e-15)


def test_calls_alternating_between_signatures():
    for _ in range(3):
        assert M.one(3.0) == 1.0
        assert M.one(6) == 2.0
        np.testing.assert_array_equal(A.empty(np.ones(2)), [2.0, 2.0])
        np.testing.assert_array_equal(A.empty(np.ones((1, 3))), [[2.0, 2.0, 2.0]])


def test_the_direct_entry_calls_in_the_arena_of_the_calls_before():
    """The direct entry takes the pool's frame for good: its arena, touched by the first call,
    is not allocated and touched again by the second (a large program's second call had run 4x
    slower for that, with as much memory again)."""
    m = diffc.compile("fn f(x) = sum(exp(x) * x + sin(x) * x)\n")
    x = np.linspace(0.0, 1.0, 100_000)
    first = m.f(x)
    assert m.f(x) == first and m.f(x) == first
    native = m.f._fast[m.f._fast_key((x,))[0]][0]
    assert native._direct_frame is not None
    assert native._frames == []  # the one frame made is the direct entry's (the pool makes more when needed)

"""The fast paths of a call from Python (NumPy scalars and 0-d arrays through the direct
entry, records of arrays through a cheap key): the same results, of the same types, as the
general path, and the dtype rules of weak Python floats kept."""

from __future__ import annotations

import typing

import numpy as np
import pytest
from support.native import in_threads, module

M = module("""
    fn affine(x) = x * 2.0 + 1.0
    fn twice(n) = n * 2 + 1
    fn negate(b) = not b
    fn scale(x, s) = x * s
    fn field(p) = p.a * 2.0
    fn nested(p) = p.o.a + p.o.z
    fn step(p, lr) = {w: p.w - lr * p.w, b: p.b - lr * sum(p.w)}
    fn pairs(t) = (t.1.1, t.0 * 2.0)
""")

FELL_BACK = "the general path"


def general(fn, *args):
    """The result of the general path (conversion, signature, ctypes call) for args."""
    return fn._call(args)


def direct(fn, *args):
    """fn's direct entry for the signature of args, its fallback saying when it is taken."""
    fn(*args)
    native = fn._cache[fn.signature(*args)[1]][0]
    own, native._direct = native._direct, None
    try:
        return native.direct(lambda *a: FELL_BACK)
    finally:
        native._direct = own


def same(got, want):
    assert type(got) is type(want)
    if isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            same(got[k], want[k])
    elif isinstance(want, tuple):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            same(g, w)
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    else:
        assert got == want or (got != got and want != want)


SCALARS = [
    (M.affine, 1.5),
    (M.affine, np.float64(1.5)),
    (M.affine, np.float64("nan")),
    (M.affine, np.float64("-inf")),
    (M.affine, np.float32(0.1)),
    (M.affine, np.array(1.5)),
    (M.affine, np.array(0.1, dtype=np.float32)),
    (M.twice, np.int64(-(2**62))),
    (M.twice, np.array(7)),
    (M.negate, np.bool_(True)),
    (M.negate, np.bool_(False)),
    (M.negate, np.array(True)),
]


@pytest.mark.parametrize("fn, x", SCALARS, ids=lambda v: f"{type(v).__name__}({v})" if not callable(v) else v.name)
def test_numpy_scalars_and_0d_arrays_take_the_direct_entry(fn, x):
    want = general(fn, x)
    assert direct(fn, x)(x) is not FELL_BACK
    for _ in range(3):  # the first call compiles; the next ones go through the direct entry
        same(fn(x), want)


def test_a_numpy_float32_scalar_is_f32():
    assert M.affine(np.float32(0.1)) == float(np.float32(np.float32(0.1) * 2 + 1))
    assert M.affine(0.1) == 0.1 * 2 + 1


def test_weak_python_floats_and_strong_numpy_float64_next_to_f32_arrays():
    x = np.float32([1.5, -2.0])
    for _ in range(3):  # in turns, so that each finds the other's direct entry installed
        assert M.scale(x, 0.1).dtype == np.float32  # a Python float is weak
        assert M.scale(x, np.float64(0.1)).dtype == np.float64  # a NumPy float64 promotes
        assert M.scale(x, np.array(0.1)).dtype == np.float64
        assert M.scale(x, np.float32(0.1)).dtype == np.float32
    d = direct(M.scale, x, 0.1)
    assert d(x, np.float64(0.1)) is FELL_BACK and d(x, np.array(0.1)) is FELL_BACK
    assert d(x, 0.1).dtype == np.float32


def test_the_direct_entry_of_a_float_takes_no_other_dtype():
    d = direct(M.affine, 1.5)
    for other in (np.float32(1.5), np.int64(1), np.array(1), np.array([1.5]), np.array(1.5, dtype=">f8")):
        assert d(other) is FELL_BACK
    d = direct(M.negate, True)
    assert d(np.array(True)) is not FELL_BACK and d(np.int64(1)) is FELL_BACK


class Pair(typing.NamedTuple):
    a: np.ndarray
    b: np.ndarray


def records(n):
    return {f"k{i:02d}": np.arange(3.0) + i for i in range(n)} | {"a": np.arange(3.0)}


@pytest.mark.parametrize(
    "fn, args",
    [
        (M.field, (records(1),)),
        (M.field, (records(31),)),
        (M.field, ({"z": 1.5, "a": np.float32([1.0, 2.0])},)),  # a weak float inside a record
        (M.field, ({"z": np.float64(1.5), "a": np.float32([1.0, 2.0])},)),
        (M.field, (Pair(np.arange(2.0), np.arange(2.0)),)),
        (M.nested, ({"o": {"z": np.ones(2), "a": np.arange(2.0)}},)),
        (M.step, ({"w": np.ones((3, 3)), "b": np.zeros(3)}, 0.5)),
        (M.step, ({"w": np.ones((3, 3), np.float32), "b": np.zeros(3, np.float32)}, 0.5)),
        (M.pairs, ((np.arange(2.0), (1.5, np.float32(2.0))),)),
        (M.pairs, ((np.arange(2.0), (1.5, {"a": np.int64(3)})),)),
        (M.pairs, ((np.float32([1.0]), (1.5, Pair(np.ones(1), np.zeros(1)))),)),
    ],
)
def test_records_give_what_the_general_path_gives(fn, args):
    want = general(fn, *args)
    for _ in range(3):
        same(fn(*args), want)


def test_a_record_of_other_keys_or_shapes_is_keyed_apart():
    field = module("fn field(p) = p.a * 2.0").field
    p = {"a": np.arange(3.0), "b": np.ones(3)}
    same(field(p), np.arange(3.0) * 2)
    same(field({"a": np.arange(4.0), "b": np.ones(3)}), np.arange(4.0) * 2)
    same(field({"a": np.arange(3.0), "c": np.ones(3)}), np.arange(3.0) * 2)
    same(field({"a": np.arange(3, dtype=np.float32)}), np.arange(3, dtype=np.float32) * 2)
    same(field({"a": np.arange(6.0)[::2]}), np.arange(0.0, 6.0, 2) * 2)  # not contiguous
    same(field({"a": np.arange(3)}), np.arange(3) * 2.0)
    same(field(p), np.arange(3.0) * 2)
    assert field.num_compiled == 6


def test_a_record_with_a_field_that_is_not_a_string_is_a_usage_error():
    from diffc.errors import UsageError

    M.field({"a": np.ones(2)})
    with pytest.raises(UsageError, match="field names must be strings"):
        M.field({"a": np.ones(2), 1: np.ones(2)})


def test_threads_calling_at_once():
    x32 = np.float32([1.0, 2.0])
    calls = [
        (M.affine, (np.float64(2.0),)),
        (M.affine, (np.float32(2.0),)),
        (M.scale, (x32, 0.5)),
        (M.scale, (x32, np.float64(0.5))),
        (M.step, ({"w": np.ones((2, 2)), "b": np.ones(2)}, 0.25)),
    ]
    wants = [general(fn, *args) for fn, args in calls]
    failures = []

    def run(k):
        fn, args = calls[k % len(calls)]
        try:
            for _ in range(200):
                same(fn(*args), wants[k % len(calls)])
        except BaseException as e:  # (reported by the main thread)
            failures.append(e)

    in_threads(run, [(k,) for k in range(10)])
    assert not failures, failures[0]


def test_a_function_is_found_as_an_attribute_without_getattr():
    # after its first lookup, m.f is in the module's __dict__ (no __getattr__ per call); names
    # of the Module's own attributes stay theirs
    import diffc
    from diffc.api import Module

    m = diffc.compile("fn f(x) = x + 1.0\nfn grad(x) = x * 2.0\nfn ast(x) = x\n")
    assert "f" not in vars(m)
    f = m.f
    assert vars(m)["f"] is f and m.f is f and float(m.f(1.0)) == 2.0
    assert m.grad.__func__ is Module.grad and float(m.function("grad")(1.5)) == 3.0
    assert m.ast is not m.function("ast") and float(m.function("ast")(4.0)) == 4.0
    with pytest.raises(AttributeError, match="no function `g`"):
        m.g

"""The Python API's values: arguments (numbers, bools, NumPy arrays of any integer or float
width, lists, nested dicts and tuples) in; Python scalars, NumPy arrays, dicts and tuples out;
mistakes as DiffcErrors."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import module

import diffc
from diffc.errors import BoundsError, DiffcError, DiffcNameError, UsageError

API = module("""
    fn ident(x) = x
    fn half(x) = x // 2
    fn twice(x) = x * 2
    fn flip(b) = not b
    fn square(x) = x * x
    fn record(p) = p.a + p.b.0 * p.b.1[1]
    fn echo_tree(t) = t
    fn build() = ({w: [1.0, 2.0], n: 3, flag: true, inner: (1, (2.5,))}, (), (7,))
    fn kinds() = (1, 2.5, true, [1, 2], [1.5], [true], f32(1.5), f32([0.5, 1.5]), zeros([0]), [[1, 2]])
    fn get(x, i) = x[i]
    fn talk(x) { print("value", x); x + 1.0 }
    fn pair(a, b) = a - b
""")


# --- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, want, kind",
    [
        (7, 3, int),
        (-7, -4, int),
        (7.0, 3.0, float),
        (True, 0, int),
        (np.int64(9), 4, int),
        (np.int32(9), 4, int),
        (np.float64(9.0), 4.0, float),
    ],
)
def test_scalar_arguments(value, want, kind):
    got = API.half(value)
    assert type(got) is kind and got == want


def test_bool_arguments_stay_bools():
    assert API.flip(True) is False
    np.testing.assert_array_equal(API.flip(np.array([True, False])), [False, True])


@pytest.mark.parametrize(
    "dtype, out",
    [
        (np.float64, np.float64),
        (np.float32, np.float32),
        (np.int64, np.int64),
        (np.int32, np.int64),
        (np.int16, np.int64),
        (np.int8, np.int64),
        (np.uint8, np.int64),
        (np.uint32, np.int64),
        (np.bool_, np.bool_),
    ],
)
def test_array_dtypes(dtype, out):
    x = np.array([[1, 0, 2], [3, 1, 0]]).astype(dtype)
    got = API.ident(x)
    assert isinstance(got, np.ndarray) and got.dtype == out and got.shape == (2, 3)
    np.testing.assert_array_equal(got, x.astype(out))


def test_float32_arithmetic_stays_float32():
    x = np.array([1.5, -2.25], np.float32)
    got = API.square(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x * x)


def test_int32_arrays_compute_as_i64():
    x = np.array([2**31 - 1, -5], np.int32)
    got = API.twice(x)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, x.astype(np.int64) * 2)  # no 32-bit overflow


def test_lists_are_arrays():
    np.testing.assert_array_equal(API.twice([1.0, 2.0]), [2.0, 4.0])
    np.testing.assert_array_equal(API.twice([[1, 2], [3, 4]]), [[2, 4], [6, 8]])


def test_nested_records_and_tuples():
    p = {"a": 1.0, "b": (2.0, np.array([1.0, 3.0]))}
    assert API.record(p) == 7.0
    assert API.record({"b": (2.0, [1.0, 3.0]), "a": 1.0}) == 7.0, "field order does not matter"


def test_trees_round_trip():
    tree = {"w": np.arange(3.0), "inner": (1, (True, {"z": np.float32(2.0) * np.ones(2, np.float32)}))}
    got = API.echo_tree(tree)
    assert set(got) == {"w", "inner"}
    np.testing.assert_array_equal(got["w"], tree["w"])
    n, (flag, rec) = got["inner"]
    assert n == 1 and type(n) is int and flag is True
    assert rec["z"].dtype == np.float32


def test_empty_arrays():
    got = API.ident(np.zeros((0, 3)))
    assert got.shape == (0, 3) and got.dtype == np.float64


@pytest.mark.parametrize("value", [np.array(1.5), np.array(3), np.array(True), np.float32(1.5)])
def test_zero_dimensional_arguments_stay_scalars(value):
    got = API.ident(value)
    assert np.ndim(got) == 0 and not isinstance(got, np.ndarray)
    assert got == value.item()


# --- results ----------------------------------------------------------------------------------------


def test_result_kinds():
    i, f, b, ia, fa, ba, f32, f32a, empty, nested = API.kinds()
    assert type(i) is int and i == 1
    assert type(f) is float and f == 2.5
    assert type(b) is bool and b is True
    assert ia.dtype == np.int64 and fa.dtype == np.float64 and ba.dtype == np.bool_
    assert type(f32) is float and f32 == 1.5
    assert f32a.dtype == np.float32
    assert empty.shape == (0,)
    assert nested.shape == (1, 2)


def test_records_are_dicts_and_tuples_are_tuples():
    rec, empty, single = API.build()
    assert isinstance(rec, dict) and set(rec) == {"w", "n", "flag", "inner"}
    assert rec["n"] == 3 and rec["flag"] is True and rec["inner"] == (1, (2.5,))
    np.testing.assert_array_equal(rec["w"], [1.0, 2.0])
    assert empty == () and single == (7,)


def test_results_are_fresh_arrays():
    x = np.arange(3.0)
    a, b = API.twice(x), API.twice(x)
    a[0] = 100.0
    assert b[0] == 0.0 and x[0] == 0.0


def test_print_goes_to_python_stdout(capsys):
    assert API.talk(1.5) == 2.5
    assert capsys.readouterr().out == "value 1.5\n"


# --- mistakes ---------------------------------------------------------------------------------------


def test_wrong_number_of_arguments():
    with pytest.raises(UsageError, match="takes 2 arguments, got 1"):
        API.pair(1.0)


def test_unknown_function():
    with pytest.raises(UsageError, match="no function `nothing`"):
        API.function("nothing")


def test_hasattr_on_a_missing_function_is_false():
    assert hasattr(API, "ident")
    assert not hasattr(API, "nothing")
    assert getattr(API, "nothing", None) is None


@pytest.mark.parametrize("value", [1 + 2j, "text", None, np.array(["a"]), object(), [[1.0], [2.0, 3.0]]])
def test_unsupported_arguments(value):
    with pytest.raises(UsageError):
        API.ident(value)


def test_argument_missing_a_record_field_is_a_program_error():
    with pytest.raises(DiffcNameError) as info:
        API.record({"a": 1.0})
    assert "no field `b`" in info.value.message and info.value.span.line == 7


def test_runtime_error_then_the_function_still_works():
    with pytest.raises(BoundsError) as info:
        API.get(np.arange(3.0), 3)
    span = info.value.span
    assert span is not None and info.value.location.endswith(f":{span.line}:{span.col}")
    assert API.get(np.arange(3.0), -1) == 2.0


def test_recursion_depth_is_counted_per_call():
    m = diffc.compile("fn down(n) = if n == 0 { 0 } else { 1 + down(n - 1) }")
    with pytest.raises(diffc.RecursionDepthError):
        m.down(20_000)
    for _ in range(3):  # the depth counter starts again at every call
        assert m.down(9_000) == 9_000


def test_errors_render_with_the_source_line():
    m = diffc.compile("fn f(x) =\n    x[5]\n", name="prog.dfl")
    with pytest.raises(DiffcError) as info:
        m.f(np.ones(3))
    text = info.value.render()
    assert text.splitlines()[0].startswith("prog.dfl:2:")
    assert "    x[5]" in text and "^" in text

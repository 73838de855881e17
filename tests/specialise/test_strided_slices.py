"""Strided slices `x[a:b:s]` against NumPy: every combination of bounds (open, negative, out
of range) and steps (positive, negative, longer than the axis) on a vector, steps on either
axis of a matrix mixed with indices, every dtype, and gradients (a strided scatter into
zeros). The step must be known at compile time and not 0."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from support.native import module

import diffc
from diffc.errors import ShapeError, TypeError_

BOUNDS = [None, 0, 2, -1, -3, 7, -9]
STEPS = [2, 3, -1, -2, 9]
SLICES = [slice(lo, hi, st) for lo, hi, st in itertools.product(BOUNDS, BOUNDS, STEPS)]


def _text(s: slice) -> str:
    return ":".join("" if v is None else str(v) for v in (s.start, s.stop, s.step))


VECTOR = module("\n".join(f"fn f{k}(x) = x[{_text(s)}]" for k, s in enumerate(SLICES)))


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.bool_])
def test_every_slice_of_a_vector_matches_numpy(dtype):
    x = (np.arange(6) * 3 % 5).astype(dtype)
    for k, s in enumerate(SLICES):
        got, want = getattr(VECTOR, f"f{k}")(x), x[s]
        assert got.dtype == want.dtype, s
        np.testing.assert_array_equal(got, want, err_msg=str(s))


MATRIX = [
    (slice(None), slice(None, None, 2)),
    (slice(None, None, -1), slice(1, None, 2)),
    (slice(-1, 0, -2), 1),
    (2, slice(None, None, -3)),
    (slice(4, 0, -1), slice(None, 2)),
    (slice(1, 1, 2), slice(None, None, -1)),
]


@pytest.mark.parametrize("index", MATRIX, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_strided_slices_of_a_matrix_and_their_gradients_match_numpy(index, dtype):
    text = ", ".join(_text(i) if isinstance(i, slice) else str(i) for i in index)
    m = module(f"fn f(x) = x[{text}]\nfn s(x, w) = sum(x[{text}] * w)")
    x = np.arange(20, dtype=dtype).reshape(5, 4) - 7
    want = x[index]
    np.testing.assert_array_equal(m.f(x), want)
    w = np.linspace(-1, 2, want.size).reshape(want.shape).astype(dtype)
    g = np.zeros_like(x)
    g[index] = w
    np.testing.assert_array_equal(diffc.grad(m.s)(x, w), g)


def test_a_reversed_view_keeps_infinities_nan_and_signed_zeros():
    x = np.array([np.inf, -0.0, np.nan, -np.inf])
    np.testing.assert_array_equal(module("fn f(x) = x[::-1]").f(x), x[::-1])
    assert np.signbit(module("fn f(x) = x[::-1]").f(x)[2])


def test_a_strided_view_of_a_view_reads_the_right_elements():
    """Steps compose with slices, transposes and indices taken before or after them."""
    m = module("fn f(x) = transpose(x[1:, ::-1])[::2][1, 1::3]")
    x = np.arange(42.0).reshape(6, 7)
    np.testing.assert_array_equal(m.f(x), x[1:, ::-1].T[::2][1, 1::3])


@pytest.mark.parametrize(
    "src, error, message",
    [
        ("fn main() = ones([4])[::0]", ShapeError, "a slice step cannot be 0"),
        ("fn main() = ones([4])[1:3:1.5]", TypeError_, "a slice step must be an integer"),
        ("fn f(x, s) = x[::s]\nfn main() = f(ones([4]), len(ones([2])) * 0 + 1) ", None, None),
    ],
)
def test_a_bad_step_is_a_located_error(src, error, message):
    if error is None:  # a step known from shapes is fine
        np.testing.assert_array_equal(diffc.compile(src).main(), np.ones(4))
        return
    with pytest.raises(error) as e:
        diffc.compile(src).main()
    assert message in str(e.value) and ":1:" in str(e.value)


def test_a_step_known_only_at_run_time_is_a_located_error():
    with pytest.raises(TypeError_, match="a slice step must be known at compile time"):
        diffc.compile("fn f(x, s) = x[::s[0]]").f(np.ones(4), np.array([2]))  # (an int `s` is static)


def test_steps_at_the_ends_of_i64_take_one_element():
    m = module("fn f(x) = (x[::-9223372036854775807 - 1, ::9223372036854775807], x[9223372036854775807::-2])")
    x = np.arange(12.0).reshape(3, 4)
    a, b = m.f(x)
    np.testing.assert_array_equal(a, x[:: -(2**63), :: 2**63 - 1])
    np.testing.assert_array_equal(b, x[2**63 - 1 :: -2])

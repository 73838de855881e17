"""`segment_sum(data, ids, n)` against NumPy (np.add.at into n rows): dtypes, ids of any rank,
repeated and negative ids, empty data, infinities and NaN; ids out of range are a located
BoundsError (at compile time when known then, else when the code runs), never dropped."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import module

import diffc
from diffc.errors import BoundsError, ShapeError, TypeError_


def _reference(data, ids, n):
    out = np.zeros((n,) + data.shape[ids.ndim :], dtype=data.dtype)
    with np.errstate(invalid="ignore"):  # inf + -inf is NaN, as diffc's
        np.add.at(out, ids % max(n, 1), data)
    return out


M = module("fn f3(d, ids) = segment_sum(d, ids, 3)\nfn f1(d, ids) = segment_sum(d, ids, 1)")


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize(
    "dshape, ids",
    [((5,), [0, 2, 2, -1, 0]), ((4, 3), [1, 1, 1, 1]), ((2, 3, 2), [[0, 1, 2], [2, 1, 0]]), ((0, 2), [])],
    ids=str,
)
def test_segment_sum_matches_numpy(dtype, dshape, ids):
    data = (np.arange(int(np.prod(dshape))) * 7 % 5 - 2).astype(dtype).reshape(dshape)
    ids = np.array(ids, dtype=np.int64)
    got = M.f3(data, ids)
    assert got.dtype == data.dtype
    np.testing.assert_array_equal(got, _reference(data, ids, 3))


def test_infinities_and_nan_add_up_as_numpy():
    data = np.array([np.inf, -np.inf, np.nan, 1.0, -0.0])
    ids = np.array([0, 0, 1, 2, 2])
    np.testing.assert_array_equal(M.f3(data, ids), _reference(data, ids, 3))


def test_its_gradient_is_the_gather_of_the_cotangent():
    m = diffc.compile("fn s(d, ids, w) = sum(segment_sum(d, ids, 3) * w)")
    d, ids, w = np.ones((4, 2)), np.array([2, 0, -1, 1]), np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(diffc.grad(m.s)(d, ids, w), w[ids])


def test_an_id_out_of_range_at_run_time_is_a_located_bounds_error():
    with pytest.raises(BoundsError, match="index 3 is out of bounds") as e:
        M.f3(np.ones(2), np.array([0, 3]))
    assert ":1:" in str(e.value)


@pytest.mark.parametrize(
    "call, error, message",
    [
        ("segment_sum(ones([3]), [0, 1, 2], 2)", BoundsError, "index 2 is out of bounds"),
        ("segment_sum(ones([3]), [0.0, 1.0, 2.0], 3)", TypeError_, "integer segment ids"),
        ("segment_sum(ones([3]), [0, 1], 3)", ShapeError, "the shape of the leading axes"),
        ("segment_sum(ones([3]), [0, 1, 2], -1)", ShapeError, "must be at least 0"),
        ("segment_sum(ones([3]), [0, 1, 2])", TypeError_, "takes 3 arguments"),
    ],
)
def test_a_wrong_use_is_a_located_error(call, error, message):
    with pytest.raises(error, match=message) as e:
        diffc.compile(f"fn main() = {call}").main()
    assert ":1:" in str(e.value)

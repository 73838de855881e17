"""A Python float argument is weak, as a number literal is: next to f32 arrays it is passed as
an f32, so an f32 model called with a learning rate stays f32; a NumPy float64 is strong."""

from __future__ import annotations

import numpy as np
from support.native import module

from diffc.runtime.values import flatten_args

STEP = "fn step(w, g, lr) = w - lr * g\nfn scale(p, lr) = {w: p.w * lr}\n"


def test_a_python_float_next_to_f32_arrays_keeps_them_f32():
    m = module(STEP)
    w = np.ones(3, np.float32)
    out = m.step(w, w, 0.1)
    assert out.dtype == np.float32
    assert out.tolist() == (w - np.float32(0.1) * w).tolist()
    for lr in (0.5, 0.25):  # the fast path of the next calls, each value exact
        assert m.step(w, w, lr).tolist() == [1 - lr] * 3


def test_a_numpy_float64_is_strong():
    w = np.ones(3, np.float32)
    assert module(STEP).step(w, w, np.float64(0.1)).dtype == np.float64


def test_without_f32_arrays_a_python_float_is_f64():
    assert module(STEP).step(np.ones(2), np.ones(2), 0.1).dtype == np.float64
    arrays, _ = flatten_args((1.0, 2))
    assert [a.dtype for a in arrays] == [np.float64, np.int64]


def test_inside_records_and_at_the_edges():
    out = module(STEP).scale({"w": np.ones(2, np.float32)}, 0.5)
    assert out["w"].dtype == np.float32
    arrays, _ = flatten_args((np.ones(1, np.float32), 1e300, float("nan"), -0.0, 3, True))
    assert [a.dtype for a in arrays[:4]] == [np.float32] * 4
    assert np.isinf(arrays[1]) and np.isnan(arrays[2]) and np.signbit(arrays[3])
    assert arrays[4].dtype == np.int64 and arrays[5].dtype == np.bool_

"""A Python float argument is weak, as a number literal is: next to f32 arrays it is passed as
an f32, so an f32 model called with a learning rate stays f32; a NumPy float64 is strong."""

from __future__ import annotations

import numpy as np
from support.native import module

import diffc
from diffc.runtime.values import flatten_args, type_of
from diffc.specialise.values import Weak
from diffc.typesys import DType, TensorType

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
    m = module(STEP)
    assert m.scale({"w": np.ones(2, np.float32)}, 0.5)["w"].dtype == np.float32
    one = np.ones(1, np.float32)
    assert m.step(one, one, 1e300).tolist() == [-np.inf]  # (1e300 is inf in f32, as the literal is)
    assert np.isnan(m.step(one, one, float("nan"))).all()
    assert m.step(one, one, -0.0).tolist() == [1.0]
    arrays, _ = flatten_args((one, 0.5, np.float64(0.5), 3, True))
    assert [type_of(a) for a in arrays] == [
        TensorType(DType.F32, (1,)),
        Weak(TensorType(DType.F64, ())),  # (an f64 at the call: the direct entry takes a Python float)
        TensorType(DType.F64, ()),
        TensorType(DType.I64, ()),
        TensorType(DType.BOOL, ()),
    ]


def test_a_weak_and_a_strong_float_are_two_signatures():
    m = diffc.compile(STEP)
    w = np.ones(2, np.float32)
    assert m.step(w, w, np.array(0.5)).dtype == np.float64  # (a 0-d array takes the fast path)
    assert m.step(w, w, 0.5).dtype == np.float32  # (not the direct entry of the strong one)
    assert m.step(w, w, 0.25).dtype == np.float32
    assert m.step(w, w, np.float64(0.5)).dtype == np.float64
    assert m.step.signatures() == ["(w: f32[2], g: f32[2], lr: weak f64)", "(w: f32[2], g: f32[2], lr: f64)"]

"""Lowering IR built directly with Builder (no front end): primitives that only transforms
emit, and the native failure path (a bounds check inside a loop) with its source span."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import build_program, run_program

from diffc.errors import BoundsError
from diffc.ir.build import Builder
from diffc.prims import elementwise as ew
from diffc.prims import map_
from diffc.prims import shape as sh
from diffc.source import SourceFile, Span
from diffc.typesys import DType, TensorType

F64, I64 = DType.F64, DType.I64


def T(dtype, *shape):
    return TensorType(dtype, tuple(shape))


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_copy_is_the_identity_as_a_new_value(shape):
    def build(b, x):
        c = b.emit1(ew.copy_p, [x])
        return [c, b.emit1(ew.add_p, [c, x])]

    x = np.arange(int(np.prod(shape)), dtype=float).reshape(shape) + 0.5
    c, twice = run_program(build_program([T(F64, *shape)], build), [x])
    np.testing.assert_array_equal(c, x)
    np.testing.assert_array_equal(twice, 2 * x)


def test_copy_of_a_view():
    def build(b, x):
        t = b.emit1(sh.transpose_p, [x], perm=(1, 0))
        return [b.emit1(ew.copy_p, [t])]

    x = np.arange(6.0).reshape(2, 3)
    (got,) = run_program(build_program([T(F64, 2, 3)], build), [x])
    np.testing.assert_array_equal(got, x.T)


def test_bounds_failure_inside_a_loop_reports_its_span():
    src = SourceFile("loop.dfl", "fn f(xs, ids) = map(fn(i) => xs[i], ids)\n")
    span = Span(src, 1, 30, 1, 35)

    def build(b, xs, ids):
        inner = Builder(b)
        inner.param(T(I64))  # the row index
        i = inner.param(T(I64))
        got = inner.emit1(sh.index_p, [inner.use(xs), i], span)
        body, captured = inner.finish([got])
        return b.emit(map_.map_p, [ids] + captured, body=body, n=3, num_xs=1)

    prog = build_program([T(F64, 4), T(I64, 3)], build)
    xs = np.array([1.0, 2.0, 3.0, 4.0])
    (ok,) = run_program(prog, [xs, np.array([3, -4, 0])])
    np.testing.assert_array_equal(ok, [4.0, 1.0, 1.0])
    with pytest.raises(BoundsError) as info:
        run_program(prog, [xs, np.array([0, 1, 4])])
    assert info.value.span == span
    assert "index 4 is out of bounds for an axis of length 4" in info.value.message

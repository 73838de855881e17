"""Building IR by hand with Builder: outputs are typed by each primitive's shape rule, shape
mistakes are raised with the builder's span, known integer values are folded, nested bodies
capture outer values as explicit parameters, and a hand-built program runs as native code."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import build_program, run_program

from diffc.errors import BoundsError, DiffcError, ShapeError, TypeError_
from diffc.ir.build import Builder, close_together
from diffc.ir.core import Body, Var
from diffc.ir.verify import verify
from diffc.ir.walk import all_bodies, all_eqns, clone_body
from diffc.prims import elementwise as ew
from diffc.prims import linalg, map_
from diffc.prims import reduce as red
from diffc.prims import shape as sh
from diffc.source import SourceFile, Span
from diffc.typesys import DType, TensorType, broadcast_shapes, promote

F64, F32, I64, BOOL = DType.F64, DType.F32, DType.I64, DType.BOOL


def T(dtype, *shape):
    return TensorType(dtype, tuple(shape))


def const(b, value, dtype=F64):
    return b.emit1(sh.const_p, [], value=np.asarray(value, dtype=dtype.np))


# --- types from shape rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, want",
    [
        ((2, 3), (2, 3), (2, 3)),
        ((2, 3), (3,), (2, 3)),
        ((3, 1), (1, 4), (3, 4)),
        ((), (5,), (5,)),
        ((4, 1, 2), (3, 1), (4, 3, 2)),
    ],
)
def test_elementwise_output_types_broadcast(a, b, want):
    bld = Builder()
    x, y = bld.param(T(F64, *a)), bld.param(T(F64, *b))
    assert bld.emit1(ew.add_p, [x, y]).type == T(F64, *want)
    assert bld.emit1(ew.lt_p, [x, y]).type == T(BOOL, *want)
    assert broadcast_shapes(a, b) == want


@pytest.mark.parametrize(
    "a, b, want",
    [
        ((2, 3), (3, 4), (2, 4)),
        ((3,), (3, 4), (4,)),
        ((2, 3), (3,), (2,)),
        ((3,), (3,), ()),
    ],
)
def test_matmul_output_types(a, b, want):
    bld = Builder()
    x, y = bld.param(T(F64, *a)), bld.param(T(F64, *b))
    assert bld.emit1(linalg.matmul_p, [x, y]).type == T(F64, *want)


def test_structural_output_types():
    b = Builder()
    x = b.param(T(F32, 2, 3, 4))
    assert b.emit1(red.reduce_sum_p, [x], axes=(1,)).type == T(F32, 2, 4)
    assert b.emit1(red.reduce_max_p, [x], axes=(0, 2)).type == T(F32, 3)
    assert b.emit1(red.argmax_p, [x], axis=2).type == T(I64, 2, 3)
    assert b.emit1(sh.transpose_p, [x], perm=(2, 0, 1)).type == T(F32, 4, 2, 3)
    assert b.emit1(sh.reshape_p, [x], shape=(6, 4)).type == T(F32, 6, 4)
    assert b.emit1(sh.slice_p, [x], starts=(1,), limits=(2,)).type == T(F32, 1, 3, 4)
    assert b.emit1(sh.windows_p, [x], k=2).type == T(F32, 1, 2, 3, 4)
    assert b.emit1(sh.broadcast_p, [x], shape=(5, 2, 3, 4)).type == T(F32, 5, 2, 3, 4)
    assert b.emit1(ew.convert_p, [x], dtype=F64).type == T(F64, 2, 3, 4)
    i = const(b, 1, I64)
    assert b.emit1(sh.index_p, [x, i]).type == T(F32, 3, 4)
    ids = b.param(T(I64, 5, 6))
    assert b.emit1(sh.gather_p, [x, ids]).type == T(F32, 5, 6, 3, 4)
    assert b.emit1(sh.concat_p, [x, x], axis=1).type == T(F32, 2, 6, 4)
    assert b.emit1(sh.iota_p, [], n=7).type == T(I64, 7)


@pytest.mark.parametrize(
    "prim, in_types, params, error",
    [
        (ew.add_p, [T(F64, 3), T(F64, 2)], {}, ShapeError),
        (ew.add_p, [T(F64, 3), T(I64, 3)], {}, TypeError_),
        (ew.div_p, [T(I64, 3), T(I64, 3)], {}, TypeError_),
        (ew.exp_p, [T(I64)], {}, TypeError_),
        (ew.and_p, [T(F64), T(F64)], {}, TypeError_),
        (ew.select_p, [T(F64), T(F64), T(F64)], {}, TypeError_),
        (linalg.matmul_p, [T(F64, 2, 3), T(F64, 2, 3)], {}, ShapeError),
        (sh.reshape_p, [T(F64, 2, 3)], {"shape": (4, 2)}, ShapeError),
        (sh.broadcast_p, [T(F64, 3)], {"shape": (2, 4)}, ShapeError),
        (sh.windows_p, [T(F64, 3)], {"k": 4}, ShapeError),
        (sh.concat_p, [T(F64, 2, 3), T(F64, 2, 4)], {"axis": 0}, ShapeError),
        (red.reduce_sum_p, [T(F64, 2, 3)], {"axes": (2,)}, ShapeError),
    ],
)
def test_shape_rule_errors_carry_the_span(prim, in_types, params, error):
    src = SourceFile("t.dfl", "x + y\n")
    span = Span(src, 1, 3, 1, 4)
    b = Builder()
    xs = [b.param(t) for t in in_types]
    with pytest.raises(error) as info:
        b.emit(prim, xs, span, **params)
    assert isinstance(info.value, DiffcError)
    assert info.value.span == span
    assert not b.eqns, "a failed emit leaves no equation behind"


# --- compile-time values ------------------------------------------------------------------------


def test_known_integer_values_fold():
    b = Builder()
    x = const(b, [3, -7, 8], I64)
    y = const(b, [2, 2, -3], I64)
    np.testing.assert_array_equal(b.emit1(ew.floordiv_p, [x, y]).known, [1, -4, -3])
    np.testing.assert_array_equal(b.emit1(ew.mod_p, [x, y]).known, [1, 1, -1])
    assert b.emit1(red.reduce_sum_p, [x], axes=(0,)).known == 4
    assert b.emit1(ew.lt_p, [x, y]).known.tolist() == [False, True, False]
    assert b.emit1(sh.iota_p, [], n=3).known.tolist() == [0, 1, 2]


def test_values_depending_on_parameters_do_not_fold():
    b = Builder()
    p = b.param(T(I64, 3))
    c = const(b, [1, 2, 3], I64)
    assert c.known is not None
    assert b.emit1(ew.add_p, [p, c]).known is None


def test_static_index_out_of_bounds_is_found_while_building():
    b = Builder()
    x = const(b, [1, 2, 3], I64)
    with pytest.raises(BoundsError):
        b.emit1(sh.index_p, [x, const(b, 3, I64)])
    assert b.emit1(sh.index_p, [x, const(b, -3, I64)]).known == 1


# --- nested bodies --------------------------------------------------------------------------------


def test_nested_builder_captures_outer_values_as_parameters():
    outer = Builder()
    w = outer.param(T(F64, 3))
    inner = Builder(outer)
    row = inner.param(T(F64, 3))
    out = inner.emit1(ew.mul_p, [row, w])
    body, captured = inner.finish([out])
    assert captured == [w]
    assert len(body.params) == 2 and body.params[0] is row
    assert body.eqns[0].inputs[1] is body.params[1] is not w


def test_map_body_in_a_program_verifies_and_runs():
    def build(b, xs, w):
        inner = Builder(b)
        inner.param(T(I64))  # the row index
        row = inner.param(T(F64, 3))
        y = inner.emit1(ew.tanh_p, [inner.emit1(ew.mul_p, [row, w])])
        s = inner.emit1(red.reduce_sum_p, [y], axes=(0,))
        body, captured = inner.finish([s])
        (out,) = b.emit(map_.map_p, [xs] + captured, body=body, n=4, num_xs=1)
        return [out]

    prog = build_program([T(F64, 4, 3), T(F64, 3)], build)
    verify(prog)
    assert [e.prim.name for e in all_eqns(prog.main.body)] == ["map", "mul", "tanh", "reduce_sum"]
    assert len(list(all_bodies(prog.main.body))) == 2
    xs, w = np.arange(12.0).reshape(4, 3) / 10, np.array([1.0, -2.0, 0.5])
    (got,) = run_program(prog, [xs, w])
    np.testing.assert_allclose(got, np.tanh(xs * w).sum(1), rtol=1e-13)


def test_close_together_gives_siblings_the_same_parameters():
    outer = Builder()
    a, b_ = outer.param(T(F64)), outer.param(T(F64))
    then, else_ = Builder(outer), Builder(outer)
    t = then.emit1(ew.exp_p, [a])
    e = else_.emit1(ew.neg_p, [b_])
    (tb, eb), operands = close_together([then, else_], [[t], [e]])
    assert operands == [a, b_]
    assert tb.in_types == eb.in_types == [T(F64), T(F64)]


def test_close_together_keeps_outer_values_a_branch_only_returns():
    """The root cause of programs/if_branch_returns_variable.dfl: `if a > b { a } else { b }`."""
    outer = Builder()
    a, b_ = outer.param(T(F64)), outer.param(T(F64))
    then, else_ = Builder(outer), Builder(outer)
    (tb, eb), operands = close_together([then, else_], [[a], [b_]])
    assert operands == [a, b_]
    assert tb.outs[0] in tb.params and eb.outs[0] in eb.params


def test_clone_body_gives_fresh_values():
    b = Builder()
    x = b.param(T(F64, 2))
    y = b.emit1(ew.sin_p, [x])
    body, _ = b.finish([y])
    copy = clone_body(body)
    old = {v.id for v in body.params + body.outs}
    assert not old & {v.id for v in copy.params + copy.outs}
    assert [e.prim for e in copy.eqns] == [e.prim for e in body.eqns]
    assert copy.in_types == body.in_types and copy.out_types == body.out_types


def test_promotion_order():
    assert promote(BOOL, I64) is I64
    assert promote(I64, F32) is F32
    assert promote(F32, F64) is F64
    assert promote(F64, BOOL) is F64


def test_var_identity_and_repr():
    v, w = Var(T(F64, 2)), Var(T(F64, 2))
    assert v != w and v == v
    assert "f64[2]" in repr(v)
    assert isinstance(Body([v], [], [v]).out_types[0], TensorType)

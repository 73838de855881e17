"""The IR verifier (style.md, practice 5): it accepts what the front end and Builder produce and
rejects IR that breaks single assignment, defined-before-use or the shape rules. The suite
runs it after every pass (tests/conftest.py sets DIFFC_VERIFY=1)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from support.native import build_program, ir_of, module

from diffc.errors import InternalError
from diffc.ir.core import Body, Eqn, Var
from diffc.ir.verify import verify
from diffc.prims import elementwise as ew
from diffc.prims import map_
from diffc.typesys import DType, TensorType

V3 = TensorType(DType.F64, (3,))


def test_the_suite_verifies_after_every_pass():
    assert os.environ.get("DIFFC_VERIFY") == "1"


def test_accepts_builder_output():
    prog = build_program([V3, V3], lambda b, x, y: [b.emit1(ew.mul_p, [x, y])])
    verify(prog)


def test_accepts_front_end_output_with_nested_bodies():
    m = module("fn f(xs) = scan(fn(c, x) => (c + x, if x > c { x * 2.0 } else { c - 1.0 }), 0.0, xs)")
    verify(ir_of(m, "f", np.ones(4)))


def _body_with(eqns, params, outs):
    prog = build_program([V3], lambda b, x: [x])
    prog.main.body = Body(params, eqns, outs)
    return prog


def test_rejects_use_before_definition():
    x, ghost, out = Var(V3), Var(V3), Var(V3)
    prog = _body_with([Eqn(ew.add_p, [x, ghost], {}, [out])], [x], [out])
    with pytest.raises(InternalError, match="before it is defined"):
        verify(prog)


def test_rejects_double_assignment():
    x, out = Var(V3), Var(V3)
    eqns = [Eqn(ew.neg_p, [x], {}, [out]), Eqn(ew.neg_p, [x], {}, [out])]
    with pytest.raises(InternalError, match="assigned twice"):
        verify(_body_with(eqns, [x], [out]))


def test_rejects_output_types_that_disagree_with_the_shape_rule():
    x, out = Var(V3), Var(TensorType(DType.F64, (4,)))
    with pytest.raises(InternalError, match="shape rule"):
        verify(_body_with([Eqn(ew.neg_p, [x], {}, [out])], [x], [out]))


def test_rejects_returning_an_undefined_value():
    x = Var(V3)
    with pytest.raises(InternalError, match="not defined"):
        verify(_body_with([], [x], [Var(V3)]))


def test_rejects_a_nested_body_that_uses_a_value_it_does_not_receive():
    """Bodies are closed: an outer value must come in as a parameter (a captured input)."""
    s = TensorType(DType.F64, ())
    w, i, row, out = Var(s), Var(TensorType(DType.I64, ())), Var(s), Var(s)
    body = Body([i, row], [Eqn(ew.add_p, [row, w], {}, [out])], [out])
    xs, res = Var(V3), Var(V3)
    prog = _body_with([Eqn(map_.map_p, [xs], {"body": body, "n": 3, "num_xs": 1}, [res])], [xs], [res])
    with pytest.raises(InternalError, match="before it is defined"):
        verify(prog)

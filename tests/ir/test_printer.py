"""The IR printer: values are named %0, %1, ... in order of first appearance, so the text of
a program does not depend on the ids its values happened to get; nested bodies are indented
under the equation that owns them."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import build_program, ir_of, module

from diffc.ir.build import Builder
from diffc.prims import elementwise as ew
from diffc.prims import map_
from diffc.prims import reduce as red
from diffc.prims import shape as sh
from diffc.typesys import DType, TensorType

printer = pytest.importorskip("diffc.ir.printer")

F64, I64 = DType.F64, DType.I64


def small_program():
    def build(b, x, y):
        s = b.emit1(ew.add_p, [x, y])
        t = b.emit1(ew.tanh_p, [s])
        return [b.emit1(red.reduce_sum_p, [t], axes=(0,))]

    return build_program([TensorType(F64, (3,)), TensorType(F64, (3,))], build)


def test_small_program_text():
    assert printer.print_program(small_program()) == (
        "func main(%0: f64[3], %1: f64[3]):\n"
        "  %2: f64[3] = add %0 %1\n"
        "  %3: f64[3] = tanh %2\n"
        "  %4: f64 = reduce_sum[axes=(0,)] %3\n"
        "  return %4\n"
    )


def test_text_does_not_depend_on_value_ids():
    first, second = small_program(), small_program()
    assert first.main.body.params[0].id != second.main.body.params[0].id
    assert printer.print_program(first) == printer.print_program(second)


def test_names_follow_first_appearance_in_nested_bodies():
    def build(b, xs):
        inner = Builder(b)
        inner.param(TensorType(I64, ()))  # the row index
        row = inner.param(TensorType(F64, (2,)))
        body, captured = inner.finish([inner.emit1(ew.exp_p, [row])])
        return b.emit(map_.map_p, [xs] + captured, body=body, n=4, num_xs=1)

    text = printer.print_program(build_program([TensorType(F64, (4, 2))], build))
    lines = text.splitlines()
    assert lines[0] == "func main(%0: f64[4, 2]):"
    assert lines[1].startswith("  %1: f64[4, 2] = map[") and "n=4" in lines[1]
    assert lines[2].strip() == "body (%2: i64, %3: f64[2]):"
    assert lines[3].strip() == "%4: f64[2] = exp %3"
    assert lines[4].strip() == "return %4"
    assert len(lines[2]) - len(lines[2].lstrip()) > 2, "the body is indented under its equation"
    assert lines[-1] == "  return %1"


def test_constants_and_params_are_printed():
    def build(b, x):
        c = b.emit1(sh.const_p, [], value=np.array([1.0, 2.0]))
        return [b.emit1(ew.mul_p, [x, c])]

    text = printer.print_program(build_program([TensorType(F64, (2,))], build))
    assert "const[value=[1., 2.]]" in text


def test_front_end_program_prints():
    """A front-end program with loops, branches and recursion prints one line per equation."""
    m = module("""
        fn fact(n) = if n <= 1 { 1 } else { n * fact(n - 1) }
        fn relu1(x) = if x > 0.0 { x * 1.0 } else { 0.0 }
        fn f(xs) = (fold(fn(a, x) => a + x, 0.0, xs), fact(len(xs)), map(relu1, xs))
    """)
    text = printer.print_program(ir_of(m, "f", np.ones(3)))
    assert text.count("func ") == 2
    for word in ("scan[", "call[", "map[", "cond", "branches[0]", "branches[1]", "body ("):
        assert word in text, word
    assert text == printer.print_program(ir_of(m, "f", np.ones(3)))

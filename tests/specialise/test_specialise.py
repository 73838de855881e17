"""The specialiser (diffc/specialise/): a function of a loaded module, for given argument types,
becomes one typed IR program. Closures and non-recursive calls are inlined, a recursive
function becomes a Func reached by `call`, tuples and records are flattened into tensors, and
shapes (and what follows from them: lengths, loop counts) are constants of the program."""

from __future__ import annotations

import numpy as np
import pytest
from support.native import module

from diffc.errors import TypeError_
from diffc.ir.printer import print_program
from diffc.ir.verify import verify
from diffc.ir.walk import all_eqns
from diffc.pytree import LEAF, unflatten
from diffc.runtime.values import flatten_args, type_of
from diffc.specialise import recursive_functions, specialise


def ir(source: str, fn: str, *args):
    """(Program, output tree) of `fn` specialised to the types of the Python/NumPy args."""
    arrays, tree = flatten_args(args)
    prog, out_tree = specialise(module(source).ast, fn, unflatten(tree, [type_of(a) for a in arrays]))
    verify(prog)
    return prog, out_tree


def prims_of(prog) -> list[str]:
    return [e.prim.name for f in prog.funcs.values() for e in all_eqns(f.body)]


def test_a_closure_is_inlined_into_the_loop_that_calls_it():
    """The lambda becomes the map's body; the value it captures (`a`) is an explicit input of
    the map and a parameter of the body, not a reference to the outer body."""
    prog, tree = ir("fn f(xs, a) = map(fn(v) => v * a, xs)", "f", np.ones(3), 2.0)
    assert tree == LEAF and list(prog.funcs) == ["main"]
    assert print_program(prog) == (
        "func main(%0: f64[3], %1: f64):\n"
        "  %2: f64[3] = map[n=3, num_xs=1] %0 %1\n"
        "    body (%3: i64, %4: f64, %5: f64):\n"
        "      %6: f64 = mul %4 %5\n"
        "      return %6\n"
        "  return %2\n"
    )


def test_calls_of_non_recursive_functions_are_inlined():
    prog, _ = ir("fn sq(x) = x * x\nfn twice(g, x) = g(g(x))\nfn f(x) = twice(sq, x)", "f", 3.0)
    assert list(prog.funcs) == ["main"]
    assert prims_of(prog) == ["mul", "mul"]


def test_a_recursive_function_becomes_a_function_of_the_program():
    """One Func per signature it is called with, marked recursive and reached by `call`; the
    entry is `main` and not recursive."""
    src = "fn fact(n) = if n <= 1 { 1 } else { n * fact(n - 1) }\nfn f(n, x) = (fact(n), fact(n) * 2, x)"
    prog, tree = ir(src, "f", 5, 1.5)
    assert repr(tree) == "(*, *, *)"
    assert set(prog.funcs) == {"fact.0", "main"} and prog.entry == "main"
    assert prog.funcs["fact.0"].recursive and not prog.main.recursive
    calls = [e.params["func"] for e in all_eqns(prog.main.body) if e.prim.name == "call"]
    inner = [e.params["func"] for e in all_eqns(prog.funcs["fact.0"].body) if e.prim.name == "call"]
    assert calls == ["fact.0", "fact.0"] and inner == ["fact.0"]


def test_mutual_recursion_is_found():
    src = """
        fn even(n) = if n == 0 { true } else { odd(n - 1) }
        fn odd(n) = if n == 0 { false } else { even(n - 1) }
        fn helper(n) = n + 1
        fn f(n) = even(helper(n))
    """
    mod = module(src).ast
    rec = recursive_functions(mod)
    assert rec == {id(mod.fns["even"]), id(mod.fns["odd"])}
    prog, _ = ir(src, "f", 4)
    assert all(f.recursive for name, f in prog.funcs.items() if name != "main")
    assert len(prog.funcs) >= 2


def test_shapes_are_specialised():
    """The same function for f64[3] and f64[5] gives two programs whose loop counts and lengths
    are constants; len() is known at compile time and folded."""
    src = "fn f(xs) = (for i in 0..len(xs) => xs[i] * 2.0, len(xs) * 2)"
    for n in (3, 5):
        prog, _ = ir(src, "f", np.ones(n))
        body = prog.main.body
        assert [p.type.shape for p in body.params] == [(n,)]
        (m,) = [e for e in body.eqns if e.prim.name == "map"]
        assert m.params["n"] == n
        length = body.outs[1]
        assert length.known is not None and int(length.known) == 2 * n


def test_tuples_and_records_are_flattened():
    """A record argument becomes one parameter per field, in sorted field order; the output
    tree says how to rebuild the result."""
    prog, tree = ir("fn f(p) = (p.w @ p.x, {s: sum(p.x)})", "f", {"x": np.ones(2), "w": np.ones((3, 2))})
    assert [p.type.shape for p in prog.main.body.params] == [(3, 2), (2,)]
    assert repr(tree) == "(*, {s: *})"
    assert [o.type.shape for o in prog.main.body.outs] == [(3,), ()]


def test_integer_arguments_are_run_time_values():
    """Arguments are never known at compile time, unlike literals: `n + 1` of an argument is
    an equation, of a literal a known value."""
    prog, _ = ir("fn f(n) = (n + 1, 2 + 1)", "f", 4)
    a, b = prog.main.body.outs
    assert a.known is None and int(b.known) == 3


def test_negative_literals_adapt_to_f32():
    """`-0.5` is a literal like `0.5`: next to an f32 operand it takes the f32's width."""
    prog, _ = ir("fn f(x) = (x * -0.5, -2.0 * x, x - -1.0, x * -(0.5), -9223372036854775807 - 1)", "f", np.float32(1))
    outs = prog.main.body.outs
    assert [o.type.dtype.value for o in outs] == ["f32", "f32", "f32", "f32", "i64"]
    assert int(outs[4].known) == -(2**63)


def test_type_errors_are_found_while_specialising():
    with pytest.raises(TypeError_, match="needs a record or a module"):
        ir("fn f(p) = p.w", "f", np.ones(2))


def test_a_sum_over_an_empty_axis_is_a_constant_that_reads_nothing():
    """sum over an axis of length 0 is 0 of the array's dtype whatever it holds: a constant, so
    that nn.zero_of(x) does not count as a read of x (which kept x from fusing into the ops
    that read it: the scaled scores of attention were a pass of their own)."""
    src = "fn f(x) = (sum(x[:0]), sum(x[:, :0], axis=1), sum(x[:, :0], axis=1, keepdims=true))"
    x = np.array([[np.nan, np.inf], [1.0, 2.0]], np.float32)
    prog, _ = ir(src, "f", x)
    assert "reduce_sum" not in prims_of(prog)
    assert str(prog.main.body.outs[0].type) == "f32"
    a, b, c = module(src).f(x)
    assert a == 0
    np.testing.assert_array_equal(b, np.zeros(2, np.float32))
    assert c.shape == (2, 1) and not c.any()
    assert module("fn g(n) = sum(n[:0])").g(np.array([1, 2])) == 0

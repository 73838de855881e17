"""The derivative-rule protocol (diffc/ad/rules.py): rules get a context carrying the builder,
the program being built and the reverse-mode Mode; the transforms pass it on explicitly, so
what they make goes to the context's program and is built in the context's mode."""

from __future__ import annotations

import diffc
from diffc.ad.rules import Ctx, Mode
from diffc.ir.build import Builder
from diffc.ir.walk import all_eqns
from diffc.pipeline import to_ir
from diffc.prims.core import all_prims
from diffc.typesys import DType, TensorType

F64 = TensorType(DType.F64, ())

RECURSIVE = """
fn f(x, n) = if n == 0 { x } else { sin(f(x, n - 1)) }
fn main(x) = f(x, 3)
"""

LOOP = """
fn main(x) = while(fn(y) => y < 100.0, fn(y) => y * x, 1.5)
"""


def traced(source):
    m = diffc.compile(source)
    prog, _ = to_ir(m.ast, "main", (F64,), after="specialise")
    return prog


def test_what_a_transform_makes_goes_to_the_context_program():
    """A recursive function's derivatives are added to the program of the context, not to
    the one traced last."""
    mine, other = traced(RECURSIVE), traced(RECURSIVE)
    before = set(other.funcs)
    Ctx(mine).vjp_split(mine.main.body, [True])
    assert {"f.0.fwd", "f.0.bwd"} <= set(mine.funcs)
    assert set(other.funcs) == before
    Ctx(mine).jvp_body(mine.main.body, [True])
    assert "f.0.jvp" in mine.funcs and set(other.funcs) == before


def _untapes(body):
    return [e for e in all_eqns(body) if e.prim is all_prims()["while_untape"]]


def test_the_mode_is_the_context_mode():
    """A tape's reverse op keeps its origin (the loop's inputs) where the code may be
    differentiated again (OPEN), and not inside a tape's own bodies (TAPE_INSIDE)."""
    prog = traced(LOOP)
    _, open_bwd, _ = Ctx(prog).vjp_split(prog.main.body, [True])
    _, inside_bwd, _ = Ctx(prog).building(Mode.TAPE_INSIDE).vjp_split(prog.main.body, [True])
    (kept,), (dropped,) = _untapes(open_bwd), _untapes(inside_bwd)
    assert kept.params["origin"] is not None and dropped.params["origin"] is None


def test_a_context_is_never_changed():
    prog, b = traced(LOOP), Builder()
    ctx = Ctx(prog)
    on_b, inside = ctx.on(b), ctx.building(Mode.TAPE_FREE)
    assert (ctx.b, ctx.mode) == (None, Mode.OPEN)
    assert (on_b.b, on_b.mode, on_b.program) == (b, Mode.OPEN, prog)
    assert (inside.mode, inside.program) == (Mode.TAPE_FREE, prog)
    assert ctx.keeps_origin and inside.keeps_origin and not ctx.building(Mode.TAPE_INSIDE).keeps_origin


def test_rules_are_given_the_context_on_their_builder():
    """Every rule the transforms call is given a context on the builder it emits into."""
    seen = []
    prims = all_prims()
    sin = prims["sin"]
    rules = {"vjp": sin.vjp, "vjp_fwd": sin.vjp_fwd, "jvp": sin.jvp}

    def spy(name):
        def rule(ctx, *rest):
            seen.append((name, type(ctx), isinstance(ctx.b, Builder)))
            return rules[name](ctx, *rest)

        return rule

    prog = traced("fn main(x) = sin(x)")
    try:
        for name in rules:
            setattr(sin, name, spy(name))
        Ctx(prog).vjp_split(prog.main.body, [True])
        Ctx(prog).jvp_body(prog.main.body, [True])
    finally:
        for name, rule in rules.items():
            setattr(sin, name, rule)
    assert sorted(seen) == [("jvp", Ctx, True), ("vjp", Ctx, True), ("vjp_fwd", Ctx, True)]

"""Loop-invariant code motion: equations of a map, scan or while body that read only the
loop's constants are computed once, before the loop. Used as a pass, and by the loops'
derivative rules before they split a body, so that invariants are not taped per iteration."""

from __future__ import annotations

from ..ir.core import Body, Program
from ..ir.walk import all_bodies
from ..prims.core import may_fail
from ..prims.shape import const_p

NEVER = {"call", "random_bits", "random_uniform", "random_normal"}  # calls may print or recurse; draws are big


def hoist(builder, body: Body, first_const: int, const_values: list, may_not_run: bool):
    """Move the invariant equations of `body` (whose params from first_const on are the loop's
    constants, bound to const_values outside) into `builder`, before the loop.
    Returns (new body, new const values): the body takes the hoisted values as extra constants."""
    invariant = {p.id: v for p, v in zip(body.params[first_const:], const_values)}
    kept, hoisted = [], []
    for eqn in body.eqns:
        movable = (
            eqn.inputs
            and not eqn.prim.effect
            and not eqn.bodies()
            and eqn.prim.name not in NEVER
            and all(x.id in invariant or x.known is not None for x in eqn.inputs)
            and not all(x.known is not None for x in eqn.inputs)
            and not (may_not_run and may_fail(eqn))  # not made to fail where it would not run
        )
        if movable:
            ins = [
                invariant[x.id] if x.id in invariant else builder.emit1(const_p, [], value=x.known) for x in eqn.inputs
            ]
            outs = builder.emit(eqn.prim, ins, eqn.span, **eqn.params)
            for o, v in zip(eqn.outs, outs):
                invariant[o.id] = v
                hoisted.append(o)
        else:
            kept.append(eqn)
    if not hoisted:
        return body, list(const_values)
    # bodies are closed, so a nested body reads a hoisted value only through its op's inputs
    used = {x.id for e in kept for x in e.inputs} | {o.id for o in body.outs}
    new_params, new_values = [], []
    for o in hoisted:
        if o.id in used:
            new_params.append(o)  # the hoisted value becomes a parameter of the same identity
            new_values.append(invariant[o.id])
    return Body(body.params + new_params, kept, body.outs), list(const_values) + new_values


def run(prog: Program) -> Program:
    """Hoist invariants out of every map and scan with at least one iteration."""
    from ..ir.build import Builder

    for f in prog.funcs.values():
        for body in list(all_bodies(f.body)):
            new_eqns = []
            for eqn in body.eqns:
                name = eqn.prim.name
                if name in ("map", "scan"):
                    p = eqn.params
                    n = p["n"] if name == "map" else p["length"]
                    first = 1 + p["num_xs"] + (p["num_carry"] if name == "scan" else 0)
                    n_in = len(eqn.inputs) - (len(p["body"].params) - first)
                    b = Builder()
                    b.defined.update(x.id for x in eqn.inputs)
                    new_body, consts = hoist(b, p["body"], first, eqn.inputs[n_in:], n == 0)
                    new_eqns += b.eqns
                    eqn.params = {**p, "body": new_body}
                    eqn.inputs = eqn.inputs[:n_in] + consts
                new_eqns.append(eqn)
            body.eqns = new_eqns
    return prog

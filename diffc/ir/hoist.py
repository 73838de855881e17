"""Loop-invariant equations out of a loop body under construction: used by the tracer when it
builds a loop (so that invariants are computed once and, before differentiation, not taped per
iteration) and by the licm pass (optimise/licm.py)."""

from __future__ import annotations

from .core import Body
from .prim import const_p, may_fail


def hoist(builder, body: Body, first_const: int, const_values: list, may_not_run: bool):
    """Move the invariant equations of `body` (whose params from first_const on are the loop's
    constants, bound to const_values outside) into `builder`, before the loop.
    Returns (new body, new const values): the body takes the hoisted values as extra constants."""
    invariant = {p.id: v for p, v in zip(body.params[first_const:], const_values)}
    kept, hoisted = [], []
    for eqn in body.eqns:
        movable = (
            eqn.inputs
            and eqn.prim.hoistable
            and not eqn.prim.effect
            and not eqn.bodies()
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
    # a constant only the hoisted equations read is no longer the loop's: its derivative would
    # be a carry of its size through every step (`x[:4]` in a map over windows of x)
    consts = [(p, v) for p, v in zip(body.params[first_const:], const_values) if p.id in used]
    new_params, new_values = body.params[:first_const] + [p for p, _ in consts], [v for _, v in consts]
    for o in hoisted:
        if o.id in used:
            new_params.append(o)  # the hoisted value becomes a parameter of the same identity
            new_values.append(invariant[o.id])
    return Body(new_params, kept, body.outs), new_values

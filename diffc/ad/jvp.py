"""Forward mode as a transform of typed IR into typed IR.

jvp_body(ctx, body, has_tangent) returns a body taking (params, tangents of the params marked in
has_tangent that are floats) and returning (outs, tangents of the float outs). Each
primitive's `jvp` rule emits the tangent of its outputs from those of its inputs; a tangent
known to be zero is absent (None), so work on inactive values is skipped."""

from __future__ import annotations

from ..errors import TypeError_
from ..ir.build import Builder
from ..ir.core import Body, is_float
from ..prims import ops
from .vjp import located, re_emit, unsupported


def jvp_body(ctx, body: Body, has_tangent: list[bool]) -> Body:
    """See the module docstring; ctx (ad/rules.py): the program and mode the rules build in."""
    b = Builder()
    bctx = ctx.on(b)
    params = [b.param(p.type, p.known, p.hint) for p in body.params]
    env = dict(zip(body.params, params))
    tangents = {}
    for p, q, has in zip(body.params, params, has_tangent):
        if has and is_float(p):
            tangents[q.id] = b.param(p.type)
    for eqn in body.eqns:
        ins = [env[x] for x in eqn.inputs]
        ts = [tangents.get(x.id) for x in ins]
        b.span = eqn.span
        if any(t is not None for t in ts) and not eqn.prim.nondiff:
            if eqn.prim.jvp_full is not None:
                outs, touts = eqn.prim.jvp_full(bctx, eqn, ins, ts)
            elif eqn.prim.jvp is not None:
                outs = re_emit(b, eqn, ins)
                touts = eqn.prim.jvp(bctx, eqn.params, ins, outs, ts)
            else:
                raise TypeError_(unsupported(eqn.prim) + " (in forward mode)", located(eqn))
            for o, t in zip(outs, touts):
                if t is not None and is_float(o):
                    tangents[o.id] = t
        else:
            outs = re_emit(b, eqn, ins)
        env.update(zip(eqn.outs, outs))
    outs = [env[o] for o in body.outs]
    touts = [tangents.get(o.id) or ops.zeros(b, o.type) for o in outs if is_float(o)]
    new, _ = b.finish(outs + touts)
    return new

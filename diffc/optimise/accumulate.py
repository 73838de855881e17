"""Start accumulators from what they are added to: `add(scan(..., init=zeros), x)`, where the
scan's carry only accumulates (see lower/loops.py, accumulators), becomes `scan(..., init=x)`.
A gradient that a loop scatters into (a gather's cotangent) and that is then added to another
term (a softmax's) is then built in one buffer: no zero-fill, no extra pass to add them."""

from __future__ import annotations

from ..ir.core import Body, Program
from ..ir.walk import all_bodies, is_zeros, uses_and_producers
from ..lower.loops import accumulators
from ..prims.elementwise import add_p
from ..prims.scan import scan_p


def seed_body(body: Body) -> None:
    changed = True
    while changed:
        changed = False
        uses, made_by = uses_and_producers(body)
        position = {id(e): k for k, e in enumerate(body.eqns)}
        for e in body.eqns:
            if e.prim is not add_p or e.inputs[0].type != e.outs[0].type or e.inputs[1].type != e.outs[0].type:
                continue
            for c, x in ((e.inputs[0], e.inputs[1]), (e.inputs[1], e.inputs[0])):
                s = made_by.get(c.id)
                if s is None or s.prim is not scan_p or uses.get(c.id) != 1:
                    continue
                k = s.outs.index(c)
                nc = s.params["num_carry"]
                if k >= nc or not is_zeros(s.inputs[k], made_by) or k not in accumulators(s.params["body"], 1, nc)[1]:
                    continue
                # the scan moves to where the add was: nothing in between may read its outputs
                start, end = position[id(s)], position[id(e)]
                outs = {o.id for o in s.outs}
                if any(x.id in outs for f in body.eqns[start + 1 : end] for x in f.inputs) or x.id in outs:
                    continue
                s.inputs = list(s.inputs)
                s.inputs[k] = x
                body.eqns = body.eqns[:start] + body.eqns[start + 1 : end] + [s] + body.eqns[end + 1 :]
                _substitute(body, e.outs[0], c)
                changed = True
                break
            if changed:
                break


def _substitute(body: Body, old, new) -> None:
    for f in body.eqns:
        f.inputs = [new if x is old else x for x in f.inputs]
    body.outs = [new if o is old else o for o in body.outs]


def run(prog: Program) -> Program:
    for f in prog.funcs.values():
        for body in list(all_bodies(f.body)):
            seed_body(body)
    return prog

"""Loop-invariant code motion: equations of a loop body that read only the loop's constants
are computed once, before the loop (ir/hoist.py), for every loop whose operand layout says
where its constants are (map, scan)."""

from __future__ import annotations

from ..ir.build import Builder
from ..ir.core import Program
from ..ir.hoist import hoist
from ..ir.walk import all_bodies


def run(prog: Program) -> Program:
    for f in prog.funcs.values():
        # innermost first: hoisting out of a loop makes its body anew, so a body nested in it,
        # visited after, would be the old one's, and what it hoisted would land there, lost
        # (a value read by the inner loop and defined nowhere)
        for body in reversed(list(all_bodies(f.body))):
            new_eqns = []
            for eqn in body.eqns:
                loop = eqn.prim.loop
                if loop is not None and loop.consts is not None:
                    p = eqn.params
                    first = loop.consts(p)
                    n_in = len(eqn.inputs) - (len(p["body"].params) - first)
                    b = Builder()
                    b.defined.update(x.id for x in eqn.inputs)
                    new_body, consts = hoist(b, p["body"], first, eqn.inputs[n_in:], loop.trips(p) == 0)
                    new_eqns += b.eqns
                    eqn.params = {**p, "body": new_body}
                    eqn.inputs = eqn.inputs[:n_in] + consts
                new_eqns.append(eqn)
            body.eqns = new_eqns
    return prog

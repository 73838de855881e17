"""Drop the guards of derivative products that cannot meet a structural zero.

`guarded_mul t p` is t * p, but 0 where t is 0, so that the branch of `where` not taken adds 0,
not NaN, even where p is infinite (Note [Structural zeros] in ad/vjp.py). The guard is only
needed where t may be a zero that stands for "no dependence": a value of `select` (the
cotangent of a `where`), a zero constant (an accumulator's start, a materialised zero
cotangent), a tangent or cotangent handed in from outside (a `copy`, see `_seed` in
specialise/ad_builtins.py), or anything computed from one. Elsewhere, in a derivative
without `where` (an ODE step), t is zero only where the exact derivative is, and the guard's
compare and select on every step's dependency chain are dropped: ode_rk4's value-and-grad
goes back from 65 to 51 us.

The analysis marks such values ("maybe zero") forward through each body; loops' carries until
they no longer change. Ops it does not know mark all their outputs.
"""

from __future__ import annotations

import numpy as np

from ..ir.core import Body, Eqn, Program
from ..ir.walk import all_eqns
from ..prims.elementwise import guarded_mul_p, mul_p


class _Marks:
    def __init__(self):
        self.guards_needed: set[int] = set()  # id() of the guarded_mul eqns whose t is marked

    def body(self, body: Body, marked_params: list[bool]) -> list[bool]:
        """Whether each output of body may be a structural zero, given its parameters'."""
        marked = {p.id for p, m in zip(body.params, marked_params) if m}
        for eqn in body.eqns:
            ins = [x.id in marked for x in eqn.inputs]
            for o, m in zip(eqn.outs, self.eqn(eqn, ins)):
                # only float values carry marks: an index or a mask makes its own (select)
                if o.type.dtype.is_float and (m or (o.known is not None and not np.all(o.known))):
                    marked.add(o.id)
        return [o.id in marked for o in body.outs]

    def eqn(self, eqn: Eqn, ins: list[bool]) -> list[bool]:
        prim = eqn.prim
        if prim is guarded_mul_p and ins[0]:
            self.guards_needed.add(id(eqn))
        if prim.loop is not None and prim.loop.indexed:
            return self.loop(eqn, ins)
        for sub in eqn.bodies():  # other structured ops: every parameter may be a zero
            self.body(sub, [True] * len(sub.params))
        # ops that keep zeros pass marks on but make none (unlike select, pad, scatters and
        # conversions from masks); a constant is marked by its value (in `body`)
        passes = prim.keeps_zeros(eqn) if callable(prim.keeps_zeros) else prim.keeps_zeros
        return [any(ins) or not passes] * len(eqn.outs)

    def loop(self, eqn: Eqn, ins: list[bool]) -> list[bool]:
        """A map or scan: its body is (i, *inputs), its first nc inputs the carries."""
        body, nc = eqn.params["body"], eqn.prim.loop.carries(eqn.params)[2]
        carries = ins[:nc]
        while True:  # marks only grow: at most nc rounds
            outs = self.body(body, [False] + carries + ins[nc:])
            grown = [a or b for a, b in zip(carries, outs[:nc])]
            if grown == carries:
                return outs
            carries = grown


def run(prog: Program) -> Program:
    marks = _Marks()
    for f in prog.funcs.values():
        # the entry's parameters are the caller's values, not derivative seeds (those enter
        # through `copy`); a function reached by `call` may be passed anything
        entry = f is prog.main and not f.recursive
        marks.body(f.body, [not entry] * len(f.body.params))
    for f in prog.funcs.values():
        for eqn in all_eqns(f.body):
            if eqn.prim is guarded_mul_p and id(eqn) not in marks.guards_needed:
                eqn.prim = mul_p
    return prog

"""Dead-code elimination: drop equations whose outputs are unused and that have no effect."""

from __future__ import annotations

from ..ir.core import Body, Program


def has_effect(eqn) -> bool:
    return eqn.prim.effect or any(has_effect(e) for b in eqn.bodies() for e in b.eqns)


def dce_body(body: Body) -> None:
    live = {id(o) for o in body.outs}
    kept = []
    for eqn in reversed(body.eqns):
        if has_effect(eqn) or any(id(o) in live for o in eqn.outs):
            for sub in eqn.bodies():
                dce_body(sub)
            kept.append(eqn)
            live.update(id(x) for x in eqn.inputs)
    body.eqns = kept[::-1]


def run(prog: Program) -> Program:
    for f in prog.funcs.values():
        dce_body(f.body)
    return prog

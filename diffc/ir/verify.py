"""The IR verifier: every value assigned once, every use defined before it in its body,
each equation's output types equal to its primitive's shape rule. Run after every pass when
DIFFC_VERIFY is set (the test suite sets it)."""

from __future__ import annotations

from ..errors import InternalError
from .core import Body, Program


def verify_body(body: Body, where: str, assigned: set[int]) -> None:
    defined = set()
    for p in body.params:
        _assign(p, assigned, where)
        defined.add(p.id)
    for eqn in body.eqns:
        for x in eqn.inputs:
            if x.id not in defined:
                raise InternalError(f"{where}: {eqn.prim.name} uses {x!r} before it is defined", eqn.span)
        want = eqn.prim.shape([x.type for x in eqn.inputs], **eqn.params)
        got = [o.type for o in eqn.outs]
        if want != got:
            raise InternalError(f"{where}: {eqn.prim.name} outputs {got}, its shape rule says {want}", eqn.span)
        for sub in eqn.bodies():
            verify_body(sub, f"{where}/{eqn.prim.name}", assigned)
        for o in eqn.outs:
            _assign(o, assigned, where)
            defined.add(o.id)
    for o in body.outs:
        if o.id not in defined:
            raise InternalError(f"{where}: returns {o!r}, which is not defined in the body")


def _assign(v, assigned, where):
    if v.id in assigned:
        raise InternalError(f"{where}: {v!r} is assigned twice")
    assigned.add(v.id)


def verify(prog: Program) -> None:
    assigned: set[int] = set()
    for name, f in prog.funcs.items():
        verify_body(f.body, name, assigned)

"""Generic traversals of the IR shared by passes."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .core import Body, Eqn, Program, Var


def all_bodies(body: Body) -> Iterator[Body]:
    """`body` and every body nested in it, outermost first."""
    yield body
    for eqn in body.eqns:
        for sub in eqn.bodies():
            yield from all_bodies(sub)


def all_eqns(body: Body) -> Iterator[Eqn]:
    for b in all_bodies(body):
        yield from b.eqns


def program_bodies(prog: Program) -> Iterator[Body]:
    for f in prog.funcs.values():
        yield from all_bodies(f.body)


def clone_body(body: Body, env: dict | None = None) -> Body:
    """A copy of `body` with fresh values throughout (sub-bodies too), so that one body can be
    inlined or reused in several places and every value is still assigned once."""
    env = dict(env or {})
    params = []
    for p in body.params:
        q = Var(p.type, p.known, p.hint)
        env[p] = q
        params.append(q)
    eqns = [_clone_eqn(e, env) for e in body.eqns]
    return Body(params, eqns, [env[o] for o in body.outs])


def _clone_eqn(eqn: Eqn, env: dict) -> Eqn:
    params = {}
    for k, v in eqn.params.items():
        if isinstance(v, Body):
            v = clone_body(v)
        elif isinstance(v, tuple) and v and isinstance(v[0], Body):
            v = tuple(clone_body(b) for b in v)
        params[k] = v
    outs = []
    for o in eqn.outs:
        q = Var(o.type, o.known, o.hint)
        env[o] = q
        outs.append(q)
    return Eqn(eqn.prim, [env[x] for x in eqn.inputs], params, outs, eqn.span, eqn.note)


def inline(builder, body: Body, args: list) -> list:
    """Emit a copy of `body`'s equations into `builder` with its params bound to `args`;
    returns the values of its outputs."""
    env = dict(zip(body.params, args))
    for eqn in body.eqns:
        new = _clone_eqn(eqn, env)
        new.inputs = [builder.use(x) for x in new.inputs]
        builder.eqns.append(new)
        builder.defined.update(o.id for o in new.outs)
    return [env[o] for o in body.outs]


def uses_and_producers(body: Body) -> tuple[dict[int, int], dict[int, Eqn]]:
    """How many times each value of `body` is read (its outputs count as a read), and the
    equation that makes each value."""
    uses: dict[int, int] = {}
    made_by: dict[int, Eqn] = {}
    for e in body.eqns:
        for x in e.inputs:
            uses[x.id] = uses.get(x.id, 0) + 1
        for o in e.outs:
            made_by[o.id] = e
    for o in body.outs:
        uses[o.id] = uses.get(o.id, 0) + 1
    return uses, made_by


def is_zeros(v, made_by) -> bool:
    """Whether v is known to be all zeros: a zero constant, broadcast or reshaped (ops that
    keep all zeros; made_by from uses_and_producers)."""
    e = made_by.get(v.id)
    while e is not None and e.prim.keeps_all_zeros:
        v = e.inputs[0]
        e = made_by.get(v.id)
    return v.known is not None and not np.any(v.known)

"""Dead-code elimination: drop equations whose outputs are unused and that have no effect.
An equation that may fail at run time (an index out of range) is an effect: the program
stops with the error whether or not the value is read."""

from __future__ import annotations

from ..ir.core import Body, Program
from ..ir.prim import Kind, may_fail


def has_effect(eqn, effectful_funcs=frozenset()) -> bool:
    """Whether eqn prints (or does another effect) or may fail, itself, in a body it owns, or
    in a function it calls."""
    if eqn.prim.effect or may_fail(eqn) or (eqn.prim.kind is Kind.CALL and eqn.params["func"] in effectful_funcs):
        return True
    return any(has_effect(e, effectful_funcs) for b in eqn.bodies() for e in b.eqns)


def effectful_functions(prog: Program) -> set[str]:
    """The functions with an effect (or that may fail), directly or through the functions they
    call."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, f in prog.funcs.items():
            if name not in found and any(has_effect(e, found) for e in f.body.eqns):
                found.add(name)
                changed = True
    return found


def dce_body(body: Body, effectful_funcs=frozenset()) -> None:
    live = {id(o) for o in body.outs}
    kept = []
    for eqn in reversed(body.eqns):
        if has_effect(eqn, effectful_funcs) or any(id(o) in live for o in eqn.outs):
            stacks = eqn.prim.loop is not None and eqn.prim.loop.stacked is not None
            if stacks:
                _prune_stacked(eqn, live, kept, body)
            for sub in eqn.bodies():
                dce_body(sub, effectful_funcs)
            if stacks and _prune_stacked(eqn, live, kept, body):  # (its body may now return one value twice)
                dce_body(eqn.params["body"], effectful_funcs)
            kept.append(eqn)
            live.update(id(x) for x in eqn.inputs)
    body.eqns = kept[::-1]


def _prune_stacked(eqn, live: set[int], later: list, body: Body) -> bool:
    """A loop's stacked outputs (a map's, a scan's ys) that nothing reads, and those that stack
    the same value of its body as another (a result that is also its own residual, exp's),
    are not made: the equations after it (`later`, and `body`'s outputs) read the one kept in
    their place. Whether it dropped any."""
    inner, start = eqn.params["body"], eqn.prim.loop.stacked(eqn.params)
    first: dict[int, int] = {}  # id of a body output -> the first stacked output that returns it
    same = {}
    for j in range(start, len(eqn.outs)):
        k, o = first.setdefault(id(inner.outs[j]), j), eqn.outs[j]
        if k != j and id(o) in live:
            same[o.id] = eqn.outs[k]
            live.add(id(eqn.outs[k]))
    if same:
        for e in later:
            e.inputs = [same.get(x.id, x) for x in e.inputs]
        body.outs = [same.get(x.id, x) for x in body.outs]
    keep = [j for j, o in enumerate(eqn.outs) if j < start or (id(o) in live and o.id not in same)] or [0]
    if len(keep) == len(eqn.outs):
        return False
    eqn.params = {**eqn.params, "body": Body(inner.params, inner.eqns, [inner.outs[j] for j in keep])}
    eqn.outs = [eqn.outs[j] for j in keep]
    return True


def run(prog: Program) -> Program:
    effectful = effectful_functions(prog)
    for f in prog.funcs.values():
        dce_body(f.body, effectful)
    return prog

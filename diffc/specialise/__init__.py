"""Specialisation: a module's function, for given argument types, becomes an IR Program."""

from __future__ import annotations

from ..resolve import Module, references
from .trace import Tracer
from .values import FnRef


def all_modules(mod: Module) -> list[Module]:
    seen, order = set(), []

    def go(m):
        if id(m) in seen:
            return
        seen.add(id(m))
        order.append(m)
        for sub in m.imports.values():
            go(sub)

    go(mod)
    return order


def recursive_functions(mod: Module) -> set[int]:
    """ids of the FnDefs that can reach themselves through the functions they mention."""
    edges = {}
    for m in all_modules(mod):
        for fn in m.fns.values():
            targets = []
            for ref in references(fn):
                if "." in ref:
                    alias, name = ref.split(".", 1)
                    sub = m.imports.get(alias)
                    if sub and name in sub.fns:
                        targets.append(sub.fns[name])
                elif ref in m.fns:
                    targets.append(m.fns[ref])
            edges[id(fn)] = [id(t) for t in targets]
    rec = set()
    for start in edges:
        stack, seen = list(edges[start]), set()
        while stack:
            f = stack.pop()
            if f == start:
                rec.add(start)
                break
            if f not in seen:
                seen.add(f)
                stack.extend(edges.get(f, ()))
    return rec


def specialise(mod: Module, fn_name: str, arg_types: tuple, name: str = "main"):
    """Trace `fn_name` of `mod` for arguments of the given types (a tuple of trees of
    TensorTypes). Returns (Program, output TreeDef)."""
    tracer = Tracer(recursive_functions(mod))
    return tracer.trace_entry(FnRef(mod.fns[fn_name], mod), arg_types, name)

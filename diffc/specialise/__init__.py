"""Specialisation: a module's function, for given argument types, becomes an IR Program."""

from __future__ import annotations

from ..resolve import Module, references
from ..typesys import DType
from .ad_builtins import AD_BUILTINS
from .trace import Tracer
from .values import FnRef, Partial


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


def specialise(mod: Module, fn_name: str, arg_types: tuple, name: str = "main", transform: tuple = ()):
    """Trace `fn_name` of `mod` for arguments of the given types (a tuple of trees of
    TensorTypes). Returns (Program, output TreeDef). `transform` differentiates it first:
      ("grad", argnums, with_value)  grad / value_and_grad(f, argnums)
      ("jvp", n)    f'(primals; tangents): called with the n primals, then n tangents
      ("vjp", n)    the pullback of f at the n primals applied to a last argument, the cotangent"""
    tracer = Tracer(recursive_functions(mod))
    wrap = (lambda tr, f: transformed(tr, f, transform)) if transform else None
    return tracer.trace_entry(FnRef(mod.fns[fn_name], mod), arg_types, name, wrap)


def transformed(tr, f, spec):
    kind = spec[0]
    if kind == "grad":
        _, argnums, with_value = spec
        nums = (
            tuple(tr.const(k, DType.I64) for k in argnums)
            if isinstance(argnums, tuple)
            else tr.const(argnums, DType.I64)
        )
        return AD_BUILTINS["value_and_grad" if with_value else "grad"](tr, [f, nums], {})
    n = spec[1]
    if kind == "jvp":
        return Partial("jvp", lambda tr, args, kw: AD_BUILTINS["jvp"](tr, [f, tuple(args[:n]), tuple(args[n:])], {}))

    def pullback(tr, args, kw):
        _, pb = AD_BUILTINS["vjp"](tr, [f] + list(args[:n]), {})
        return pb.impl(tr, [args[n]], {})

    return Partial("vjp", pullback)

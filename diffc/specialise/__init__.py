"""Specialisation: a module's function, for given argument types, becomes an IR Program."""

from __future__ import annotations

import numpy as np

from ..pytree import flatten, unflatten
from ..resolve import Module, references
from ..typesys import DType
from .ad_builtins import AD_BUILTINS
from .trace import Tracer, leaf_names
from .values import FnRef, NeedStatic, Partial, Static


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
    """specialise_static without argument values: (Program, output TreeDef)."""
    prog, out_tree, _ = specialise_static(mod, fn_name, arg_types, name, transform)
    return prog, out_tree


def specialise_static(
    mod: Module, fn_name: str, arg_types: tuple, name: str = "main", transform: tuple = (), values: list | None = None
):
    """Trace `fn_name` of `mod` for arguments of the given types (a tuple of trees of
    TensorTypes, and Static leaves for compile-time values). Returns (Program, output TreeDef,
    the signature it was specialised for). `transform` differentiates it first:
      ("grad", argnums, with_value)  grad / value_and_grad(f, argnums)
      ("jvp", n)    f'(primals; tangents): called with the n primals, then n tangents
      ("vjp", n)    the pullback of f at the n primals applied to a last argument, the cotangent
    `values` (the flat arguments, when known) lets an int or bool scalar argument become a
    compile-time value where tracing needs one: the signature returned then has it as a
    Static leaf (See Note [Static arguments] in trace.py)."""
    wrap = (lambda tr, f: transformed(tr, f, transform)) if transform else None
    while True:
        tracer = Tracer(recursive_functions(mod))
        try:
            prog, out_tree = tracer.trace_entry(FnRef(mod.fns[fn_name], mod), arg_types, name, wrap, values is not None)
            return prog, out_tree, arg_types
        except NeedStatic as need:
            arg_types = with_static(arg_types, need.leaves, values)


def with_static(arg_types, leaves, values):
    """The signature with these leaves made Static, their values taken from `values`."""
    types, tree = flatten(arg_types)
    for i in leaves:
        types[i] = Static(types[i], np.asarray(values[i]).item())
    return unflatten(tree, types)


def static_text(param_names: list[str], arg_types) -> str:
    """The static arguments of a signature as `n=64, cfg.depth=2` ('' when there are none)."""
    return signature_text(param_names, arg_types, static_only=True)


def signature_text(param_names: list[str], arg_types, static_only: bool = False) -> str:
    """A signature leaf by leaf, a static one with its value: `x: f32[8, 3], n=64`."""
    types, tree = flatten(arg_types)
    names = leaf_names(tree, param_names)
    return ", ".join(
        f"{name}={str(t.value).lower()}" if isinstance(t, Static) else f"{name}: {t}"
        for name, t in zip(names, types)
        if isinstance(t, Static) or not static_only
    )


def static_leaves(arg_types) -> list[int]:
    """The indices of the Static leaves of a signature."""
    return [i for i, t in enumerate(flatten(arg_types)[0]) if isinstance(t, Static)]


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

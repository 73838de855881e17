"""The registry of primitives: each is declared once (a Prim, ir/prim.py) with its shape rule,
derivative rules, lowering and the facts the passes read, side by side (see style.md,
practice 1)."""

from __future__ import annotations

from typing import Any

from ..ir.prim import Kind, Loop, Prim, const_p

__all__ = ["Kind", "Loop", "Prim", "primitive", "all_prims", "get", "rules_via"]

_REGISTRY: dict[str, Prim] = {const_p.name: const_p}  # (the IR's own primitive)


def primitive(name: str, **rules: Any) -> Prim:
    """Declare and register a primitive."""
    if name in _REGISTRY:
        raise ValueError(f"primitive {name} declared twice")
    p = Prim(name, **rules)
    _REGISTRY[name] = p
    return p


def all_prims() -> dict[str, Prim]:
    return dict(_REGISTRY)


def get(name: str) -> Prim:
    return _REGISTRY[name]


def rules_via(equivalent):
    """(jvp_full, vjp_fwd, vjp) rules of an op differentiated as an equivalent body,
    equivalent(ctx, eqn) -> (body, picks): See Note [Differentiating a tape] in ad/via.py."""
    return (
        lambda ctx, eqn, ins, ts: ctx.via_jvp_full(equivalent, eqn, ins, ts),
        lambda ctx, eqn, ins, act: ctx.via_vjp_fwd(equivalent, eqn, ins, act),
        lambda ctx, params, aux, outs, cts: ctx.via_vjp(params, aux, outs, cts),
    )

"""The Prim record and its registry: each primitive is declared once, with its shape rule,
derivative rules and lowering side by side (see style.md, practice 1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError

_REGISTRY: dict[str, Prim] = {}


@dataclass(eq=False)
class Prim:
    """A primitive operation of the IR.

    shape(in_types, **params) -> list of out types; raises ShapeError on bad inputs.
    lower(em, eqn, ins) -> list of lowered outs (see lower/emit.py).
    jvp(b, params, ins, outs, tangents) -> tangents of the outs (None: zero).
    vjp(b, params, ins, outs, cts) -> cotangents of the ins (None: zero). Structured ops also
    have vjp_fwd(b, eqn, ins, active) -> (outs, aux), an augmented forward whose aux replaces
    `ins` in their vjp, and jvp_full(b, eqn, ins, tangents) -> (outs, tangents), emitted instead
    of the op itself. `nondiff` marks primitives whose outputs
    carry no derivative (comparisons, integer ops, random bits).
    fold(*known_inputs, **params) -> list of arrays: compile-time evaluation for known
    (integer, boolean, shape) values only.
    effect: the equation must be kept and ordered even when its outputs are unused (print).
    fallible: it may stop the program with a run-time error (a bounds check) unless its params
    say `safe=True`: see may_fail.
    """

    name: str
    shape: Callable[..., list]
    lower: Callable | None = None
    jvp: Callable | None = None
    vjp: Callable | None = None
    vjp_fwd: Callable | None = None
    jvp_full: Callable | None = None
    threads_cotangents: bool = False  # vjp(..., current) -> (cts, indices of totals): see ad/vjp.py
    tapes: bool = False  # its vjp_fwd makes a run-time tape that only its vjp frees: vjp always runs
    nondiff: bool = False
    fold: Callable | None = None
    effect: bool = False
    fallible: bool = False
    fusable: bool = False  # lowered by em.elementwise: may stay Lazy (lower/emit.py)
    reads_lazy: bool = False  # its lowering reads inputs only through em.read/broadcast_view

    def __repr__(self) -> str:
        return self.name


def primitive(name: str, **rules: Any) -> Prim:
    """Declare and register a primitive."""
    if name in _REGISTRY:
        raise ValueError(f"primitive {name} declared twice")
    p = Prim(name, **rules)
    _REGISTRY[name] = p
    return p


def all_prims() -> dict[str, Prim]:
    from . import load_all

    load_all()

    return dict(_REGISTRY)


def get(name: str) -> Prim:
    all_prims()
    return _REGISTRY[name]


def may_fail(eqn) -> bool:
    """Whether eqn itself may stop the program with a run-time error: such an equation is kept
    even when its outputs are unused, and never moved to where it might run when the program
    would not run it (an out-of-range index is an error whether or not its value is read)."""
    return eqn.prim.fallible and not eqn.params.get("safe", False)


def shape_error(msg: str) -> ShapeError:
    return ShapeError(msg)

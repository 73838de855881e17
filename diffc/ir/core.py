"""The typed SSA graph IR.

A `Body` is a closed sub-graph: parameters, equations in program order, outputs. Structured
ops (map, scan, while, cond) own bodies in their params; a body never refers to a value of
an enclosing body except through its parameters (captured values are explicit inputs of the
op), so every body can be printed, verified, differentiated and lowered on its own. Values
are tensors only: tuples and records were flattened by the specialiser.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..source import NO_SPAN, Span
from ..typesys import TensorType

_ids = itertools.count()


class Var:
    """One SSA value. `known` holds its value when it is known at compile time (integer and
    boolean arithmetic, shapes, literals): the specialiser reads it for comprehension bounds,
    reshape targets and static bounds checks. Equality is identity."""

    __slots__ = ("type", "known", "id", "hint", "range")

    def __init__(self, type: TensorType, known: np.ndarray | None = None, hint: str = "", range=None):
        self.type = type
        self.known = known
        self.id = next(_ids)
        self.hint = hint
        self.range = range  # (lo, hi): an integer scalar known to lie in lo..hi-1 (loop indices)

    def __repr__(self) -> str:
        return f"%v{self.id}:{self.type}"


def is_float(v: Var) -> bool:
    """Whether v can carry a derivative."""
    return v.type.dtype.is_float


@dataclass
class Eqn:
    prim: Any  # prims.core.Prim
    inputs: list[Var]
    params: dict[str, Any]
    outs: list[Var]
    span: Span = NO_SPAN
    note: str = ""  # shown by the printer, e.g. what a loop's tape holds

    def bodies(self) -> list[Body]:
        """The sub-bodies this equation owns (for structured ops), in a fixed order."""
        found = []
        for v in self.params.values():
            if isinstance(v, Body):
                found.append(v)
            elif isinstance(v, tuple) and v and isinstance(v[0], Body):
                found.extend(v)
        return found


@dataclass
class Body:
    params: list[Var]
    eqns: list[Eqn]
    outs: list[Var]

    @property
    def in_types(self) -> list[TensorType]:
        return [p.type for p in self.params]

    @property
    def out_types(self) -> list[TensorType]:
        return [o.type for o in self.outs]


@dataclass
class Func:
    """A function reached by `call` (recursion) or the program's entry."""

    name: str
    body: Body
    span: Span = NO_SPAN
    recursive: bool = False


@dataclass
class Program:
    funcs: dict[str, Func] = field(default_factory=dict)
    entry: str = "main"

    @property
    def main(self) -> Func:
        return self.funcs[self.entry]

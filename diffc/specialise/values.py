"""What a DFL expression evaluates to while the specialiser traces it.

Tensors are IR Vars. Tuples are Python tuples and records are pytree.Records of values.
Functions are known at compile time (closures, top-level functions, built-ins): they are
called by tracing their bodies, so no function value reaches the IR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ir.core import Var
from ..pytree import Record
from ..syntax import nodes as n
from ..typesys import TensorType


@dataclass(eq=False)
class Closure:
    params: tuple[n.Param, ...]
    body: n.Expr
    env: dict[str, Any]
    module: Any
    name: str = "lambda"


@dataclass(eq=False)
class FnRef:
    """A top-level function of a module."""

    fndef: n.FnDef
    module: Any

    @property
    def name(self) -> str:
        return self.fndef.name


@dataclass(eq=False)
class Builtin:
    name: str
    impl: Any


@dataclass(eq=False)
class ModuleRef:
    module: Any


@dataclass(eq=False)
class Partial:
    """A function value made by a built-in that wraps another (grad(f), vjp's pullback...):
    calling it calls impl(tracer, args, kwargs, span)."""

    name: str
    impl: Any


FUNCTION_TYPES = (Closure, FnRef, Builtin, Partial)


@dataclass(frozen=True)
class Static:
    """A leaf of an entry function's signature: an int or bool scalar argument taken as a
    compile-time value (see Note [Static arguments] in trace.py). Its value is part of the
    signature, so of the cache key: each value compiles its own code."""

    type: TensorType
    value: int | bool

    def __repr__(self) -> str:
        return f"{self.type}={self.value}"


@dataclass(frozen=True)
class Weak:
    """A leaf of an entry function's signature: a Python float passed next to f32 arrays. It is
    an f64 at the call (what Python passes) and an f32 in the program, as a number literal
    next to an f32 is; a NumPy float64 stays a strong f64."""

    type: TensorType

    def __repr__(self) -> str:
        return f"weak {self.type}"


class NeedStatic(Exception):
    """Tracing needs the value of these leaves of the entry's arguments (int or bool scalars
    given with their values): specialise again with them static."""

    def __init__(self, leaves):
        super().__init__(leaves)
        self.leaves = leaves


def describe(v) -> str:
    """How a value is named in an error message."""
    if isinstance(v, Var):
        return str(v.type)
    if isinstance(v, tuple):
        return "(" + ", ".join(describe(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, Record):
        return "{" + ", ".join(f"{k}: {describe(x)}" for k, x in v.fields.items()) + "}"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, ModuleRef):
        return f"module {v.module.name}"
    if isinstance(v, FUNCTION_TYPES):
        return "a function"
    return type(v).__name__

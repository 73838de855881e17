"""The surface language as frozen dataclasses. Every node carries the Span it came from.

Node classes are named in CamelCase; the grammar's `-> alias` names are their snake case."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..source import NO_SPAN, Span


@dataclass(frozen=True)
class Node:
    span: Span = field(default=NO_SPAN, compare=False, kw_only=True)


# --- types in annotations: `f64`, `f64[n, 3]`, `i64[]` -------------------------------------


@dataclass(frozen=True)
class TypeAnn(Node):
    dtype: str  # "f64" | "f32" | "i64" | "bool"
    dims: tuple[str | int, ...] | None  # None: any rank; names bind at the call


@dataclass(frozen=True)
class Param(Node):
    name: str
    ann: TypeAnn | None = None


# --- expressions -----------------------------------------------------------------------------


class Expr(Node):
    pass


@dataclass(frozen=True)
class Num(Expr):
    value: int | float
    is_float: bool


@dataclass(frozen=True)
class Bool(Expr):
    value: bool


@dataclass(frozen=True)
class Str(Expr):
    value: str


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class BinOp(Expr):
    op: str  # "+" "-" "*" "/" "//" "%" "@" "**" "==" "!=" "<" "<=" ">" ">=" "and" "or"
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Expr):
    op: str  # "-" | "not"
    operand: Expr


@dataclass(frozen=True)
class Keyword(Node):
    name: str
    value: Expr


@dataclass(frozen=True)
class Call(Expr):
    fn: Expr
    args: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...] = ()


@dataclass(frozen=True)
class Slice(Node):
    """`lo:hi:step` in a subscript; any part may be left out."""

    lo: Expr | None
    hi: Expr | None
    step: Expr | None = None


@dataclass(frozen=True)
class Index(Expr):
    value: Expr
    indices: tuple[Expr | Slice, ...]


@dataclass(frozen=True)
class Field(Expr):
    """`value.name`: a record field, or a module member when value names a module."""

    value: Expr
    name: str


@dataclass(frozen=True)
class TupleIndex(Expr):
    """`value.0`"""

    value: Expr
    index: int


@dataclass(frozen=True)
class ArrayLit(Expr):
    elems: tuple[Expr, ...]


@dataclass(frozen=True)
class TupleLit(Expr):
    elems: tuple[Expr, ...]


@dataclass(frozen=True)
class RecordLit(Expr):
    fields: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True)
class If(Expr):
    cond: Expr
    then: Expr
    else_: Expr  # `else if` chains nest here


@dataclass(frozen=True)
class Lambda(Expr):
    params: tuple[Param, ...]
    body: Expr


@dataclass(frozen=True)
class Iter(Node):
    """`name in lo..hi` inside a comprehension."""

    name: str
    lo: Expr
    hi: Expr


@dataclass(frozen=True)
class Comprehension(Expr):
    iters: tuple[Iter, ...]
    body: Expr


# --- blocks ----------------------------------------------------------------------------------


class Pattern(Node):
    pass


@dataclass(frozen=True)
class PName(Pattern):
    name: str


@dataclass(frozen=True)
class PTuple(Pattern):
    items: tuple[Pattern, ...]


@dataclass(frozen=True)
class Let(Node):
    pattern: Pattern
    value: Expr


@dataclass(frozen=True)
class ExprStmt(Node):
    expr: Expr


@dataclass(frozen=True)
class Block(Expr):
    stmts: tuple[Let | ExprStmt, ...]
    result: Expr


# --- top level -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import(Node):
    name: str


@dataclass(frozen=True)
class FnDef(Node):
    name: str
    params: tuple[Param, ...]
    ret: TypeAnn | None
    body: Expr


@dataclass(frozen=True)
class LetDef(Node):
    name: str
    value: Expr


@dataclass(frozen=True)
class Module(Node):
    items: tuple[Import | FnDef | LetDef, ...]

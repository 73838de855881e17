"""AST → DFL text, for `diffc show --ast` and for messages that quote code.

The output parses back to an equal tree (`parse(pretty(m)) == m` for every module `parse`
returns); parentheses appear only where precedence needs them."""

from __future__ import annotations

from enum import IntEnum

from .nodes import (
    ArrayLit,
    BinOp,
    Block,
    Bool,
    Call,
    Comprehension,
    Expr,
    ExprStmt,
    Field,
    FnDef,
    If,
    Import,
    Index,
    Lambda,
    Let,
    LetDef,
    Module,
    Name,
    Num,
    Param,
    Pattern,
    PName,
    PTuple,
    RecordLit,
    Slice,
    Str,
    TupleIndex,
    TupleLit,
    TypeAnn,
    UnaryOp,
)

INDENT = "    "


class Prec(IntEnum):
    """The grammar's precedence levels, loosest first (one rule each in dfl.lark)."""

    EXPR = 0  # lambda, if, comprehension
    OR = 1
    AND = 2
    NOT = 3
    COMPARE = 4
    ARITH = 5
    TERM = 6
    FACTOR = 7  # unary minus
    POWER = 8
    POSTFIX = 9
    ATOM = 10


_BINARY = {"or": Prec.OR, "and": Prec.AND, "+": Prec.ARITH, "-": Prec.ARITH, "**": Prec.POWER}
_BINARY |= dict.fromkeys(("==", "!=", "<", "<=", ">", ">="), Prec.COMPARE)
_BINARY |= dict.fromkeys(("*", "/", "//", "%", "@"), Prec.TERM)


def pretty(module: Module) -> str:
    """The module as DFL source, one blank line between top-level items."""
    return "".join(_item(item) + "\n\n" for item in module.items).rstrip("\n") + "\n"


def pretty_expr(expr: Expr, indent: int = 0) -> str:
    """One expression as DFL source; blocks inside it are indented from level `indent`."""
    return _expr(expr, Prec.EXPR, indent)


def _item(item) -> str:
    match item:
        case Import(name):
            return f"import {name}"
        case LetDef(name, value):
            return f"let {name} = {pretty_expr(value)}"
        case FnDef(name, params, ret, body):
            head = f"fn {name}({_params(params)})"
            if ret is not None:
                head += f" -> {_type(ret)}"
            if isinstance(body, Block):
                return f"{head} {_block(body, 0)}"
            return f"{head} = {pretty_expr(body)}"
    raise TypeError(f"not a top-level item: {item!r}")


def _expr(e: Expr, prec: Prec, indent: int) -> str:
    """`e` as text, parenthesised when its own level binds looser than `prec` demands."""
    text, own = _text(e, indent)
    return f"({text})" if own < prec else text


def _text(e: Expr, indent: int) -> tuple[str, Prec]:
    def sub(x: Expr, prec: Prec = Prec.EXPR) -> str:
        return _expr(x, prec, indent)

    match e:
        case Num(value, is_float):
            return (repr(float(value)) if is_float else str(value)), Prec.ATOM
        case Bool(value):
            return ("true" if value else "false"), Prec.ATOM
        case Str(value):
            return f'"{value}"', Prec.ATOM
        case Name(id):
            return id, Prec.ATOM
        case BinOp(op, left, right):
            prec = _BINARY[op]
            if op == "**":  # right-associative, and its right side may be negated: `2 ** -1`
                return f"{sub(left, Prec.POSTFIX)} ** {sub(right, Prec.FACTOR)}", prec
            # left-associative, and comparisons do not chain: both sides one level tighter
            left_prec = prec + 1 if prec == Prec.COMPARE else prec
            return f"{sub(left, left_prec)} {op} {sub(right, prec + 1)}", prec
        case UnaryOp("not", operand):
            return f"not {sub(operand, Prec.NOT)}", Prec.NOT
        case UnaryOp(op, operand):
            text = sub(operand, Prec.FACTOR)
            return (f"{op} {text}" if text.startswith(op) else f"{op}{text}"), Prec.FACTOR
        case Call(fn, args, kwargs):
            parts = [sub(a) for a in args] + [f"{k.name}={sub(k.value)}" for k in kwargs]
            return f"{sub(fn, Prec.POSTFIX)}({', '.join(parts)})", Prec.POSTFIX
        case Index(value, indices):
            parts = ", ".join(_slice(i, indent) if isinstance(i, Slice) else sub(i) for i in indices)
            return f"{sub(value, Prec.POSTFIX)}[{parts}]", Prec.POSTFIX
        case Field(value, name):
            return f"{_dotted(value, indent)}.{name}", Prec.POSTFIX
        case TupleIndex(value, index):
            return f"{_dotted(value, indent)}.{index}", Prec.POSTFIX
        case ArrayLit(elems):
            return f"[{', '.join(sub(x) for x in elems)}]", Prec.ATOM
        case TupleLit(elems):
            return _tuple([sub(x) for x in elems]), Prec.ATOM
        case RecordLit(fields):
            return "{" + ", ".join(f"{n}: {sub(v)}" for n, v in fields) + "}", Prec.ATOM
        case Block():
            return _block(e, indent), Prec.ATOM
        case If():
            return _if(e, indent), Prec.EXPR
        case Lambda(params, body):
            if isinstance(body, Block):
                return f"fn({_params(params)}) {_block(body, indent)}", Prec.EXPR
            return f"fn({_params(params)}) => {sub(body)}", Prec.EXPR
        case Comprehension(iters, body):
            ranges = ", ".join(f"{it.name} in {sub(it.lo, Prec.OR)}..{sub(it.hi, Prec.OR)}" for it in iters)
            return f"for {ranges} => {sub(body)}", Prec.EXPR
    raise TypeError(f"not an expression: {e!r}")


def _dotted(value: Expr, indent: int) -> str:
    """The left of `.name` / `.0`; an integer literal there needs parentheses, since `1.0`
    would read as a float."""
    text = _expr(value, Prec.POSTFIX, indent)
    if isinstance(value, Num) and not value.is_float:
        return f"({text})"
    return text


def _slice(s: Slice, indent: int) -> str:
    lo = "" if s.lo is None else _expr(s.lo, Prec.EXPR, indent)
    hi = "" if s.hi is None else _expr(s.hi, Prec.EXPR, indent)
    if s.step is None:
        return f"{lo}:{hi}"
    return f"{lo}:{hi}:{_expr(s.step, Prec.EXPR, indent)}"


def _tuple(parts: list[str]) -> str:
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"


def _if(e: If, indent: int) -> str:
    """`else if` chains print flat, as they are written."""
    text = f"if {_expr(e.cond, Prec.EXPR, indent)} {_braced(e.then, indent)} else "
    if isinstance(e.else_, If):
        return text + _if(e.else_, indent)
    return text + _braced(e.else_, indent)


def _braced(e: Expr, indent: int) -> str:
    """An `if` branch: always in braces (a parsed branch is already a Block)."""
    return _block(e if isinstance(e, Block) else Block((), e), indent)


def _block(b: Block, indent: int) -> str:
    """`{ result }` on one line when it fits that way, else one statement per line."""
    if not b.stmts:
        result = _expr(b.result, Prec.EXPR, indent)
        if "\n" not in result:
            return f"{{ {result} }}"
    inner = indent + 1
    lines = [_stmt(s, inner) for s in b.stmts] + [_expr(b.result, Prec.EXPR, inner)]
    body = "".join(f"{INDENT * inner}{line}\n" for line in lines)
    return f"{{\n{body}{INDENT * indent}}}"


def _stmt(s: Let | ExprStmt, indent: int) -> str:
    if isinstance(s, Let):
        return f"let {_pattern(s.pattern)} = {_expr(s.value, Prec.EXPR, indent)};"
    return f"{_expr(s.expr, Prec.EXPR, indent)};"


def _pattern(p: Pattern) -> str:
    match p:
        case PName(name):
            return name
        case PTuple(items):
            return _tuple([_pattern(i) for i in items])
    raise TypeError(f"not a pattern: {p!r}")


def _params(params: tuple[Param, ...]) -> str:
    return ", ".join(p.name if p.ann is None else f"{p.name}: {_type(p.ann)}" for p in params)


def _type(t: TypeAnn) -> str:
    if t.dims is None:
        return t.dtype
    return f"{t.dtype}[{', '.join(str(d) for d in t.dims)}]"

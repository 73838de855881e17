"""DFL text → `nodes.Module`: the LALR grammar in `grammar/dfl.lark`, a Transformer that builds the
frozen AST with spans, and syntax errors worded for people rather than for parser generators.

Every failure is a `DiffcSyntaxError` pointing at the culprit; no Lark exception escapes."""

from __future__ import annotations

import functools
import importlib.resources
import math
from pathlib import Path
from typing import TYPE_CHECKING

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from ..cachedir import cache_dir, cache_file_usable
from ..errors import DiffcSyntaxError
from ..source import SourceFile, Span
from . import nodes

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

DTYPES = ("f64", "f32", "i64", "bool")
I64_MAX = 2**63 - 1


def parse(source: SourceFile) -> nodes.Module:
    """Parse a whole module, or raise DiffcSyntaxError at the first mistake."""
    try:
        tree = _parser().parse(source.text)
    except UnexpectedCharacters as err:
        raise _bad_character(source, err) from None
    except UnexpectedToken as err:
        raise _unexpected_token(source, err) from None
    _check_nesting(source, tree)
    try:
        return _ToNodes(source).transform(tree)
    except VisitError as err:  # Lark wraps what the Transformer raises
        raise err.orig_exc from None


MAX_NESTING = 20_000
"""Levels of the parse tree a program may nest (blocks, operands of a chain, calls, array
literals). The compiler's passes recurse once per level, in a few Python frames each, on a
thread that holds bigstack.RECURSION_LIMIT frames: this bound keeps them well within it."""


def _check_nesting(source: SourceFile, tree: Tree) -> None:
    """Raise DiffcSyntaxError at the first subtree nested deeper than MAX_NESTING (a walk with
    an explicit stack: the tree may be that deep)."""
    todo = [(tree, 1)]
    while todo:
        t, depth = todo.pop()
        if depth > MAX_NESTING:
            m = t.meta
            span = Span(source, m.line, m.column, m.end_line, m.end_column) if not m.empty else None
            raise DiffcSyntaxError(f"the program is nested too deeply: more than {MAX_NESTING} levels", span)
        todo.extend((c, depth + 1) for c in t.children if isinstance(c, Tree))


def parse_text(text: str, name: str = "<string>") -> nodes.Module:
    """`parse` for a string, reported under `name`."""
    return parse(SourceFile(name, text))


def grammar_path() -> Traversable:
    """Where `dfl.lark` lives: `grammar/` beside the package in a checkout, else the copy
    shipped inside the installed package as `diffc/grammar/`."""
    beside = Path(__file__).parents[2] / "grammar" / "dfl.lark"
    if beside.is_file():
        return beside
    return importlib.resources.files("diffc") / "grammar" / "dfl.lark"


class _NamesEverywhere:
    """A no-op post-lexer whose only job is to let every lexer state try NAME.
    See Note [Keywords]."""

    always_accept = ("NAME",)

    def process(self, stream):
        return stream


@functools.cache
def _parser() -> Lark:
    """The LALR parser, built once per process; its tables are kept in the compile cache's
    folder (Lark's own cache, keyed by the grammar), so a new process does not rebuild them."""
    text = grammar_path().read_text(encoding="utf-8")
    d = cache_dir()  # (only a private folder: Lark's cache is a pickle)
    lark_cache: str | bool = False
    if d is not None and cache_file_usable(d / "grammar.lark-cache"):
        lark_cache = str(d / "grammar.lark-cache")
    return Lark(
        text,
        cache=lark_cache,
        parser="lalr",
        lexer="contextual",
        start="module",
        propagate_positions=True,
        maybe_placeholders=True,
        postlex=_NamesEverywhere(),
    )


# --- parse tree → AST ------------------------------------------------------------------------


@v_args(meta=True, inline=True)
class _ToNodes(Transformer_NonRecursive):
    """One method per grammar rule or alias, each returning the node of the same name.
    Non-recursive, so long operator chains cannot hit Python's recursion limit."""

    def __init__(self, source: SourceFile):
        super().__init__()
        self.source = source

    def _span(self, meta) -> Span:
        if meta.empty:  # only an empty module matches nothing
            return Span(self.source, 1, 1, 1, 1)
        return Span(self.source, meta.line, meta.column, meta.end_line, meta.end_column)

    def _error(self, message: str, where) -> DiffcSyntaxError:
        span = where.span if isinstance(where, nodes.Node) else _token_span(self.source, where)
        return DiffcSyntaxError(message, span)

    # top level

    def module(self, meta, *items):
        return nodes.Module(items, span=self._span(meta))

    def import_(self, meta, name):
        return nodes.Import(str(name), span=self._span(meta))

    def let_def(self, meta, name, value):
        return nodes.LetDef(str(name), value, span=self._span(meta))

    def fn_def(self, meta, name, *rest):
        *params, ret, body = rest
        return nodes.FnDef(str(name), tuple(params), ret, body, span=self._span(meta))

    def param(self, meta, name, ann):
        return nodes.Param(str(name), ann, span=self._span(meta))

    def type_ann(self, meta, dtype, dims):
        if dtype not in DTYPES:
            raise self._error(f"unknown type `{dtype}`: expected f64, f32, i64 or bool", dtype)
        return nodes.TypeAnn(str(dtype), dims, span=self._span(meta))

    def dims(self, meta, *dims):
        return tuple(int(d) if d.type == "INT" else str(d) for d in dims)

    # expressions

    def lambda_(self, meta, *rest):
        *params, body = rest
        return nodes.Lambda(tuple(params), body, span=self._span(meta))

    def if_(self, meta, cond, then, else_):
        return nodes.If(cond, then, else_, span=self._span(meta))

    def comprehension(self, meta, *rest):
        *iters, body = rest
        return nodes.Comprehension(tuple(iters), body, span=self._span(meta))

    def iter(self, meta, name, lo, hi):
        return nodes.Iter(str(name), lo, hi, span=self._span(meta))

    def bin_op(self, meta, left, op, right):
        return nodes.BinOp(str(op), left, right, span=self._span(meta))

    def unary_op(self, meta, op, operand):
        return nodes.UnaryOp(str(op), operand, span=self._span(meta))

    def call(self, meta, fn, *args):
        positional, keywords = [], []
        for arg in args:
            if isinstance(arg, nodes.Keyword):
                if any(k.name == arg.name for k in keywords):
                    raise self._error(f"keyword argument `{arg.name}` given twice", arg)
                keywords.append(arg)
            elif keywords:
                raise self._error("a positional argument cannot follow a keyword argument", arg)
            else:
                positional.append(arg)
        return nodes.Call(fn, tuple(positional), tuple(keywords), span=self._span(meta))

    def keyword(self, meta, name, value):
        return nodes.Keyword(str(name), value, span=self._span(meta))

    def index(self, meta, value, *indices):
        return nodes.Index(value, indices, span=self._span(meta))

    def slice(self, meta, lo, hi, step):
        return nodes.Slice(lo, hi, step, span=self._span(meta))

    def field(self, meta, value, name):
        return nodes.Field(value, str(name), span=self._span(meta))

    def tuple_index(self, meta, value, index):
        return nodes.TupleIndex(value, int(index), span=self._span(meta))

    def num(self, meta, token):
        if token.type == "INT":
            value = int(token)
            if value > I64_MAX:
                raise self._error(f"integer `{token}` does not fit in i64", token)
            return nodes.Num(value, False, span=self._span(meta))
        value = float(token)
        if not math.isfinite(value):
            raise self._error(f"float `{token}` is too large for f64", token)
        return nodes.Num(value, True, span=self._span(meta))

    def bool(self, meta, token):
        return nodes.Bool(token == "true", span=self._span(meta))

    def str(self, meta, token):
        return nodes.Str(token[1:-1], span=self._span(meta))

    def name(self, meta, token):
        return nodes.Name(str(token), span=self._span(meta))

    def array_lit(self, meta, *elems):
        return nodes.ArrayLit(elems, span=self._span(meta))

    def tuple_lit(self, meta, *elems):
        return nodes.TupleLit(elems, span=self._span(meta))

    def record_lit(self, meta, *names_and_values):
        names, values = names_and_values[::2], names_and_values[1::2]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise self._error(f"field `{name}` appears twice in this record", name)
        fields = tuple((str(n), v) for n, v in zip(names, values))
        return nodes.RecordLit(fields, span=self._span(meta))

    # blocks and patterns

    def block(self, meta, *stmts_and_result):
        *stmts, result = stmts_and_result
        return nodes.Block(tuple(stmts), result, span=self._span(meta))

    def let(self, meta, pattern, value):
        return nodes.Let(pattern, value, span=self._span(meta))

    def expr_stmt(self, meta, expr):
        return nodes.ExprStmt(expr, span=self._span(meta))

    def p_name(self, meta, name):
        return nodes.PName(str(name), span=self._span(meta))

    def p_tuple(self, meta, *items):
        return nodes.PTuple(items, span=self._span(meta))


# --- syntax errors ---------------------------------------------------------------------------
# See Note [Syntax error messages].

_CLOSER_OF = {"(": ")", "[": "]", "{": "}"}
_OPENER_OF = {close: open_ for open_, close in _CLOSER_OF.items()}

# What may start an expression, and what may continue one that could already be complete.
_EXPR_START = {"NAME", "INT", "FLOAT", "STRING", "(", "[", "{", "-", "not", "fn", "if", "for"}
_EXPR_START |= {"true", "false"}
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
_BINARY = {"or", "and", "+", "-", "*", "/", "//", "%", "@", "**"} | _COMPARISONS
_POSTFIX = {"(", "[", "."}
_AN_EXPRESSION = "an expression"
_WORDS = {"NAME": "a name", "INT": "an integer"}
_TOP_LEVEL = {"fn", "let", "import"}
_LOOSE_STARTS = {"fn", "if", "for", "not"}  # expressions that only the loosest levels take

_LABELS: dict[str, tuple[str, ...]] = {
    # message: snippets that fail at the place it describes
    "expected `=` after the name in a `let` binding": ("let x 1.0", "fn f() { let x 1.0; x }"),
    "expected `;` after the value in a `let` binding": ("fn f() { let x = 1.0 x }",),
    "expected a name or a tuple pattern `(a, b)` after `let`": ("fn f() { let 1 = 2; 3 }",),
    "expected `=` or `{` to start the function's body": ("fn f(x) x", "fn f(x) -> f64 x"),
    "expected `=>` or `{` to start the lambda's body": ("let f = fn(x) x",),
    "expected `(` and a parameter list": ("fn f = 1", "let f = fn x => x"),
    "expected `else`: an `if` always has an `else` branch": ("let a = if c { 1 } 2",),
    "expected `{` after the condition of the `if`": ("let a = if c 1",),
    "expected `{` or `if` after `else`": ("let a = if c { 1 } else 2",),
    "expected `in` after the comprehension's variable": ("let a = for i 0..3 => i",),
    "expected `..` between the bounds of the range": ("let a = for i in 0 => i",),
    "expected `=>` (or `,` and another range) after the ranges": ("let a = for i in 0..3 i",),
    "expected `:` after the field name in a record": ("let r = {a: 1, b 2}",),
    "expected a definition (`fn`, `let` or `import`)": ("x = 1", "let a = 1 2"),
    "expected a field name or a tuple index after `.`": ("let a = x.+",),
}


_CHARACTER_HINTS = {
    "&": " (write `and`)",
    "|": " (write `or`)",
    "!": " (write `not`)",
    "'": ' (strings are written `"..."`)',
}


def _bad_character(source: SourceFile, err: UnexpectedCharacters) -> DiffcSyntaxError:
    if err.char == '"':
        end = len(source.line(err.line)) + 1
        span = Span(source, err.line, err.column, err.line, end)
        return DiffcSyntaxError('unterminated string: no closing `"` on this line', span)
    span = Span(source, err.line, err.column, err.line, err.column + 1)
    shown = f"`{err.char}`" if err.char.isprintable() else f"U+{ord(err.char):04X}"
    hint = _CHARACTER_HINTS.get(err.char, "")
    return DiffcSyntaxError(f"unexpected character {shown}{hint}", span)


def _unexpected_token(source: SourceFile, err: UnexpectedToken) -> DiffcSyntaxError:
    token = err.token
    parser = err.interactive_parser
    opened = _open_brackets(parser.parser_state.value_stack)
    if token.type == "$END":
        if opened:
            bracket = opened[-1]
            message = f"unclosed `{bracket}`: the file ends before its `{_CLOSER_OF[bracket]}`"
            return DiffcSyntaxError(message, _token_span(source, bracket))
        line, col = token.end_line or 1, token.end_column or 1
        span = Span(source, line, col, line, col + 1)
        return DiffcSyntaxError(_expected(_texts(parser.accepts()), "end of file"), span)

    span = _token_span(source, token)
    if token in _OPENER_OF and opened[-1:] != [_OPENER_OF[token]]:
        return DiffcSyntaxError(_mismatched_closer(token, opened), span)
    texts = _texts(parser.accepts())
    if token == ";" and _TOP_LEVEL <= texts:
        return DiffcSyntaxError("unexpected `;`: top-level definitions end without `;`", span)
    if token == "}" and "let" in texts:
        message = "expected the block's result: a block ends with an expression, not `;`"
        return DiffcSyntaxError(message, span)
    if token in _COMPARISONS and token not in texts and texts & _BINARY:
        return DiffcSyntaxError("comparisons do not chain: write `a < b and b < c`", span)
    if token in _LOOSE_STARTS and {"INT", "FLOAT"} <= texts:  # e.g. `1 + if c { 2 } else { 3 }`
        message = f"put this `{token}` expression in parentheses: it binds more loosely than what is before it"
        return DiffcSyntaxError(message, span)
    message = _expected(texts, _describe(token))
    if token == "=" and "==" in texts:  # `if x = 2.0 { ... }`
        message += "; did you mean `==`?"
    if opened and (token == ";" or token in _TOP_LEVEL):
        inner = opened[-1]
        if _CLOSER_OF[inner] in texts:
            message = f"unclosed `{inner}` at {_at(inner)}: {message}"
    return DiffcSyntaxError(message, span)


def _mismatched_closer(token: Token, opened: list[Token]) -> str:
    """For a closer that does not close the innermost open bracket: either nothing of its kind
    is open (a stray closer), or an inner bracket was left open."""
    opener = _OPENER_OF[token]
    if opener not in opened:
        return f"unexpected `{token}`: no `{opener}` is open"
    inner = opened[-1]
    return f"expected `{_CLOSER_OF[inner]}` to close the `{inner}` at {_at(inner)}, found `{token}`"


def _open_brackets(value_stack) -> list[Token]:
    """The brackets still open at the error, innermost last. The parser's stack holds the
    tokens of every rule it has not finished, so an open bracket is a shifted opener whose
    closer has not been shifted after it."""
    opened: list[Token] = []
    for value in value_stack:
        if isinstance(value, Token) and value in _CLOSER_OF:
            opened.append(value)
        elif isinstance(value, Token) and value in _OPENER_OF and opened:
            opened.pop()
    return opened


def _expected(texts: set[str], found: str) -> str:
    """`expected ..., found ...`, in words for the terminals the parser could have taken."""
    key = _normalise(texts)
    if key in _labels():
        return f"{_labels()[key]}, found {found}"
    words = [_AN_EXPRESSION] if _AN_EXPRESSION in key else []
    punctuation = key - _WORDS.keys() - {_AN_EXPRESSION, "$END"}
    words += [f"`{t}`" for t in sorted(punctuation, key=lambda t: (t in _OPENER_OF, t))]
    words += [word for t, word in _WORDS.items() if t in key]
    if not words:
        return f"unexpected {found}"
    if len(words) == 1:
        return f"expected {words[0]}, found {found}"
    return f"expected {', '.join(words[:-1])} or {words[-1]}, found {found}"


def _normalise(texts: set[str]) -> frozenset[str]:
    """The acceptable terminals (as texts) with the ways to start or continue an expression
    folded away: they are the same wherever an expression may be, and listing them says little.
    A continuation is dropped whenever one shows, as LALR may have reduced past the others."""
    if {"INT", "FLOAT"} <= texts:
        texts = (texts - _EXPR_START) | {_AN_EXPRESSION}
    if texts & (_BINARY | {"."}):
        texts = texts - (_BINARY | _POSTFIX)  # (a new set: the caller still reads its own)
    return frozenset(texts)


def _texts(terminals: set[str]) -> set[str]:
    """Terminal names → the literal text of string terminals (`RPAR` → `)`); others unchanged."""
    literal = _literals()
    return {literal.get(t, t) for t in terminals}


@functools.cache
def _literals() -> dict[str, str]:
    return {t.name: t.pattern.value for t in _parser().terminals if isinstance(t.pattern, PatternStr)}


@functools.cache
def _labels() -> dict[frozenset[str], str]:
    """The expected-set of each `_LABELS` snippet's failure, mapped to its message."""
    labels = {}
    for message, snippets in _LABELS.items():
        for snippet in snippets:
            try:
                _parser().parse(snippet)
            except UnexpectedToken as err:
                labels[_normalise(_texts(err.interactive_parser.accepts()))] = message
    return labels


def _describe(token: Token) -> str:
    if token.type == "NAME":
        return f"name `{token}`"
    if token.type in ("INT", "FLOAT"):
        return f"number `{token}`"
    if token.type == "STRING":
        return f"string {token}"
    if token.isalpha():
        return f"keyword `{token}`"
    return f"`{token}`"


def _token_span(source: SourceFile, token: Token) -> Span:
    return Span(source, token.line, token.column, token.end_line, token.end_column)


def _at(token: Token) -> str:
    return f"{token.line}:{token.column}"


# Note [Keywords]
# ~~~~~~~~~~~~~~~
# Lark's contextual lexer only tries the terminals the parser can take in its current state.
# Left alone, after `x` it would not try NAME, so `x orb` would lex as `x or b`, and after
# `for i` it would read `index` as `in dex`. Two things prevent that: `_NamesEverywhere` makes
# every state try NAME first (it is the longest-matching pattern), so `orb` and `index` become
# one NAME and then a clean "unexpected name" error; and NAME's regex refuses the keywords, so
# a keyword never becomes a name where the parser happens to want one (`let in = 1` fails).
# The contextual lexer is still what lets `t.0.1` read as two tuple indices: after `.` the
# parser takes INT but never FLOAT, so `0.1` is not tried as a float there.
#
# Note [Syntax error messages]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# Brackets come first, because a missing or extra one is the usual cause and the parser's
# report of it is far from the culprit: at end of file the innermost opener still on the
# parser's stack is named and pointed at; a closer with no matching opener is called stray.
# Otherwise the message says what the parser could have taken next. That set is computed
# exactly by feeding each candidate terminal to a copy of the parser (`accepts()`), since the
# LALR table's own expected set merges lookaheads from unrelated contexts. It is normalised
# (see `_normalise`), and where the normalised set identifies a construct, `_LABELS` words
# it: each label is found by parsing its bad snippets once, in the style of Lark's
# `match_examples`, so the table needs no parser state numbers and survives grammar edits.
# A test checks that every snippet still fails with its own label.

"""The parser and pretty-printer: the conformance corpus parses and round-trips, precedence and
postfix forms build the right trees, and every syntax error is a DiffcSyntaxError at the
right place with a message a person can act on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffc.errors import DiffcSyntaxError
from diffc.source import SourceFile
from diffc.syntax import nodes as n
from diffc.syntax.parse import _LABELS, grammar_path, parse, parse_text
from diffc.syntax.pretty import pretty, pretty_expr

CONFORMANCE = Path(__file__).parents[2].parent / "shared" / "conformance"
KEYWORDS = {"fn", "let", "if", "else", "for", "in", "import", "and", "or", "not", "true", "false"}


def conformance_files(folder: str, pattern: str) -> list[Path]:
    return sorted((CONFORMANCE / folder).glob(pattern)) if CONFORMANCE.is_dir() else []


needs_conformance = pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="no shared/conformance")


def expr(text: str) -> n.Expr:
    """The value of `let it = text`."""
    (item,) = parse_text(f"let it = {text}").items
    return item.value


def round_trips(module: n.Module) -> None:
    text = pretty(module)
    again = parse_text(text)
    assert again == module, text
    assert pretty(again) == text


def sexp(e) -> str:
    """A fully parenthesised rendering, to check the shape of a tree at a glance."""
    match e:
        case n.Num(value, is_float):
            return repr(float(value)) if is_float else str(value)
        case n.Name(id):
            return id
        case n.Bool(value):
            return str(value).lower()
        case n.BinOp(op, left, right):
            return f"({op} {sexp(left)} {sexp(right)})"
        case n.UnaryOp(op, operand):
            return f"({op} {sexp(operand)})"
        case n.Call(fn, args, kwargs):
            parts = [sexp(a) for a in args] + [f"{k.name}={sexp(k.value)}" for k in kwargs]
            return f"(call {' '.join([sexp(fn), *parts])})"
        case n.Index(value, indices):
            return f"(index {' '.join([sexp(value), *map(sexp, indices)])})"
        case n.Slice(lo, hi, step):
            text = f"{'' if lo is None else sexp(lo)}:{'' if hi is None else sexp(hi)}"
            return text if step is None else f"{text}:{sexp(step)}"
        case n.Field(value, name) | n.TupleIndex(value, name):
            return f"(. {sexp(value)} {name})"
        case n.Lambda(params, body):
            return f"(fn {' '.join(p.name for p in params)} {sexp(body)})"
        case n.Comprehension(iters, body):
            ranges = " ".join(f"{i.name}={sexp(i.lo)}..{sexp(i.hi)}" for i in iters)
            return f"(for {ranges} {sexp(body)})"
    raise AssertionError(f"sexp does not know {e!r}")


# --- the conformance corpus ------------------------------------------------------------------


@pytest.mark.parametrize("path", conformance_files("cases", "*.dfl"), ids=lambda p: p.stem)
def test_case_parses_and_round_trips(path):
    round_trips(parse(SourceFile(str(path), path.read_text())))


@pytest.mark.parametrize(
    "path",
    [p for p in conformance_files("errors", "*.dfl") if not p.stem.startswith("syntax_")],
    ids=lambda p: p.stem,
)
def test_program_with_a_non_syntax_error_parses(path):
    round_trips(parse(SourceFile(str(path), path.read_text())))


@pytest.mark.parametrize("path", conformance_files("errors", "syntax_*.dfl"), ids=lambda p: p.stem)
def test_syntax_error_is_reported_at_an_accepted_line(path):
    expected = json.loads((CONFORMANCE / "errors" / "expected.json").read_text())
    with pytest.raises(DiffcSyntaxError) as info:
        parse(SourceFile(path.name, path.read_text()))
    assert info.value.span.line in expected[path.stem]["lines"]
    assert f"{path.name}:{info.value.span.line}:" in info.value.render()


@needs_conformance
def test_corpus_has_syntax_error_files():
    assert conformance_files("errors", "syntax_*.dfl")


# --- precedence and postfix forms ------------------------------------------------------------

SHAPES = [
    ("-2.0 ** 2.0", "(- (** 2.0 2.0))"),
    ("2 - -3", "(- 2 (- 3))"),
    ("-3 ** 2 + 1", "(+ (- (** 3 2)) 1)"),
    ("2 ** -1", "(** 2 (- 1))"),
    ("2.0 ** 3.0 ** 2.0", "(** 2.0 (** 3.0 2.0))"),
    ("-x ** -y ** 2", "(- (** x (- (** y 2))))"),
    ("-y * y", "(* (- y) y)"),
    ("10 - 3 - 2", "(- (- 10 3) 2)"),
    ("24 // 4 // 3", "(// (// 24 4) 3)"),
    ("2 * 7 % 4", "(% (* 2 7) 4)"),
    ("2.0 * a @ v + 1.0", "(+ (@ (* 2.0 a) v) 1.0)"),
    ("b @ a @ v", "(@ (@ b a) v)"),
    ("1.0 + 2.0 * 3.0 - 4.0 / 2.0", "(- (+ 1.0 (* 2.0 3.0)) (/ 4.0 2.0))"),
    ("(1.0 + 2.0) * 3.0", "(* (+ 1.0 2.0) 3.0)"),
    ("not 1 < 2", "(not (< 1 2))"),
    ("not not a", "(not (not a))"),
    ("true or false and false", "(or true (and false false))"),
    ("not false and false", "(and (not false) false)"),
    ("a or b or c", "(or (or a b) c)"),
    ("1 + 2 == 3 and 2 * 2 != 5", "(and (== (+ 1 2) 3) (!= (* 2 2) 5))"),
    ("1.0 < 2.0 or 1.0 / 0.5 > 100.0", "(or (< 1.0 2.0) (> (/ 1.0 0.5) 100.0))"),
    ("a <= b", "(<= a b)"),
    ("a >= -b", "(>= a (- b))"),
    ("f(x)(y)", "(call (call f x) y)"),
    ("f()", "(call f)"),
    ("sum(x, axis=0)", "(call sum x axis=0)"),
    ("scan(f, 0.0, xs, reverse=true,)", "(call scan f 0.0 xs reverse=true)"),
    ("x[i, j]", "(index x i j)"),
    ("x[i][j]", "(index (index x i) j)"),
    ("x[1:3]", "(index x 1:3)"),
    ("x[:, j]", "(index x : j)"),
    ("x[1:]", "(index x 1:)"),
    ("x[:2]", "(index x :2)"),
    ("m[1, :]", "(index m 1 :)"),
    ("m[i:i + 2]", "(index m i:(+ i 2))"),
    ("x[::2]", "(index x ::2)"),
    ("x[::-1]", "(index x ::(- 1))"),
    ("x[1:5:k + 1, ::]", "(index x 1:5:(+ k 1) :)"),
    ("m[:, 3::-2]", "(index m : 3::(- 2))"),
    ("p.w", "(. p w)"),
    ("t.0", "(. t 0)"),
    ("t.0.1", "(. (. t 0) 1)"),
    ("r.pair.0", "(. (. r pair) 0)"),
    ("nested.t.0", "(. (. nested t) 0)"),
    ("helpers.dense(p, x)", "(call (. helpers dense) p x)"),
    ("scan(f, 0, xs).1", "(. (call scan f 0 xs) 1)"),
    ("-x.0", "(- (. x 0))"),
    ("-f(x) ** 2", "(- (** (call f x) 2))"),
    ("fn(x) => x + 1", "(fn x (+ x 1))"),
    ("fn(w) => fn(a, x) => a * w", "(fn w (fn a x (* a w)))"),
    ("for i in 0..n => i", "(for i=0..n i)"),
    ("for i in 0..n - 1, j in 1..m => a[i, j]", "(for i=0..(- n 1) j=1..m (index a i j))"),
    ("sum(for j in 0..m => a[i, j] * b[j])", "(call sum (for j=0..m (* (index a i j) (index b j))))"),
]


@pytest.mark.parametrize(("text", "shape"), SHAPES, ids=[t for t, _ in SHAPES])
def test_tree_shape(text, shape):
    tree = expr(text)
    assert sexp(tree) == shape
    assert expr(pretty_expr(tree)) == tree


@pytest.mark.parametrize(
    ("text", "value", "is_float"),
    [
        ("42", 42, False),
        ("0", 0, False),
        ("1.0", 1.0, True),
        ("0.5", 0.5, True),
        ("1e-3", 1e-3, True),
        ("2.5e3", 2500.0, True),
        ("1e3", 1000.0, True),
        ("10.25", 10.25, True),
    ],
)
def test_number_literals(text, value, is_float):
    assert expr(text) == n.Num(value, is_float)
    assert type(expr(text).value) is (float if is_float else int)


def test_a_range_is_not_a_float():
    (it,) = expr("for i in 0..3 => i").iters
    assert (it.lo, it.hi) == (n.Num(0, False), n.Num(3, False))


def test_other_literals_and_comments():
    assert expr("true") == n.Bool(True)
    assert expr("false") == n.Bool(False)
    assert expr('print("#not-a-comment", x)  # a comment') == n.Call(
        n.Name("print"), (n.Str("#not-a-comment"), n.Name("x"))
    )


def test_keywords_are_never_names():
    assert sexp(expr("x or orb")) == "(or x orb)"
    assert sexp(expr("for index in 0..n => index")) == "(for index=0..n index)"
    assert expr("notx") == n.Name("notx")


def test_parentheses_tuples_arrays_and_trailing_commas():
    a, b = n.Name("a"), n.Name("b")
    assert expr("(a)") == a
    assert expr("((a))") == a
    assert expr("()") == n.TupleLit(())
    assert expr("(a,)") == n.TupleLit((a,))
    assert expr("(a, b)") == expr("(a, b,)") == n.TupleLit((a, b))
    assert expr("[a, b]") == expr("[a, b,]") == n.ArrayLit((a, b))
    assert expr("[]") == n.ArrayLit(())
    assert expr("f(a, b,)") == n.Call(n.Name("f"), (a, b))


def test_record_versus_block():
    one = n.Num(1, False)
    assert expr("{w: 1, b: a}") == expr("{w: 1, b: a,}") == n.RecordLit((("w", one), ("b", n.Name("a"))))
    assert expr("{ w }") == n.Block((), n.Name("w"))
    assert expr("{ let x = 1; print(x); x }") == n.Block(
        (
            n.Let(n.PName("x"), one),
            n.ExprStmt(n.Call(n.Name("print"), (n.Name("x"),))),
        ),
        n.Name("x"),
    )
    assert expr("{ {w: 1} }") == n.Block((), n.RecordLit((("w", one),)))


def test_patterns_nest():
    block = expr("{ let ((h, c), ys) = e; let (s,) = single; s }")
    first, second = block.stmts
    assert first.pattern == n.PTuple((n.PTuple((n.PName("h"), n.PName("c"))), n.PName("ys")))
    assert second.pattern == n.PTuple((n.PName("s"),))


def test_else_if_chains_nest():
    e = expr("if a { 1 } else if b { 2 } else { 3 }")
    assert isinstance(e, n.If) and isinstance(e.else_, n.If)
    assert e.then == n.Block((), n.Num(1, False))
    assert e.else_.cond == n.Name("b")
    assert e.else_.else_ == n.Block((), n.Num(3, False))


def test_lambda_bodies():
    block_body = expr("fn(x) { let y = x; y }")
    assert block_body.body == n.Block((n.Let(n.PName("y"), n.Name("x")),), n.Name("y"))
    assert expr("fn() => 1") == n.Lambda((), n.Num(1, False))
    assert expr("fn(x: f64) => x").params == (n.Param("x", n.TypeAnn("f64", None)),)


def test_top_level_items():
    module = parse_text(
        "import nn\n"
        "let offset = 0.25\n"
        "fn f(w: f64[n, m], x: f64[m], k) -> f64[n] = w @ x\n"
        "fn g(s: i64[]) { s }\n"
        "fn main() = g(1)\n"
    )
    imp, let, f, g, main = module.items
    assert imp == n.Import("nn")
    assert let == n.LetDef("offset", n.Num(0.25, True))
    assert f.params == (
        n.Param("w", n.TypeAnn("f64", ("n", "m"))),
        n.Param("x", n.TypeAnn("f64", ("m",))),
        n.Param("k"),
    )
    assert f.ret == n.TypeAnn("f64", ("n",))
    assert g.params == (n.Param("s", n.TypeAnn("i64", ())),)
    assert g.body == n.Block((), n.Name("s"))
    assert main.params == () and main.ret is None
    assert parse_text("# only a comment\n") == n.Module(())


def test_spans_are_one_based_and_cover_the_node():
    source = SourceFile("s.dfl", "let a = 1 +\n  foo(2)\n")
    (let,) = parse(source).items
    span = let.value.span
    assert (span.file, span.line, span.col, span.end_line, span.end_col) == (source, 1, 9, 2, 9)
    call = let.value.right
    assert (call.fn.span.line, call.fn.span.col, call.fn.span.end_col) == (2, 3, 6)
    assert repr(call.span) == "s.dfl:2:3"


def test_long_operator_chains_do_not_recurse_in_the_parser():
    e = expr(" + ".join(["x"] * 3000))
    assert isinstance(e, n.BinOp) and e.right == n.Name("x")


def test_grammar_is_found():
    assert grammar_path().read_text().startswith("//")


# --- syntax errors ---------------------------------------------------------------------------

ERRORS = [
    # (source, line, col, a piece of the message)
    ("let x = 1;", 1, 10, "top-level definitions end without `;`"),
    ("fn f() { let x 1.0; x }", 1, 16, "expected `=` after the name in a `let` binding"),
    ("fn f() { let x = 1.0 }", 1, 22, "expected `;` after the value in a `let` binding"),
    ("fn f() {\n  g(1;\n  2\n}", 2, 6, "unclosed `(` at 2:4"),
    ("fn f() = (1 + 2", 1, 10, "unclosed `(`"),
    ("fn f() = g([1, 2)", 1, 17, "expected `]` to close the `[` at 1:12, found `)`"),
    ("fn f() = [1, 2)", 1, 15, "unexpected `)`: no `(` is open"),
    ("fn f() = 1)", 1, 11, "unexpected `)`: no `(` is open"),
    ("fn f() = x }", 1, 12, "unexpected `}`"),
    ("fn f() {\n  1\n", 1, 8, "unclosed `{`"),
    ('fn f() = g("abc)\n', 1, 12, "unterminated string"),
    ("fn f() = a && b", 1, 12, "unexpected character `&` (write `and`)"),
    ("fn f() = a $ b", 1, 12, "unexpected character `$`"),
    ("fn f() = a < b < c", 1, 16, "comparisons do not chain"),
    ("fn f() = if a { 1 }", 1, 20, "an `if` always has an `else` branch"),
    ("fn f() = if a { 1 } else 2", 1, 26, "expected `{` or `if` after `else`"),
    ("fn f(x) x", 1, 9, "expected `=` or `{` to start the function's body"),
    ("fn f() = fn(x) x", 1, 16, "expected `=>` or `{` to start the lambda's body"),
    ("fn f() = for i in 0..3 i", 1, 24, "expected `=>`"),
    ("fn f() = for i in 0 => i", 1, 21, "expected `..`"),
    ("fn f() = {a: 1, b 2}", 1, 19, "expected `:` after the field name"),
    ("fn f() { g(); }", 1, 15, "a block ends with an expression, not `;`"),
    ("fn f() { else }", 1, 10, "expected an expression or `let`, found keyword `else`"),
    ("fn f() = 1 => 2", 1, 12, "expected a definition (`fn`, `let` or `import`), found `=>`"),
    ("let in = 1", 1, 5, "expected a name, found keyword `in`"),
    ("let x = ", 1, 8, "expected an expression, found end of file"),
    ("x = 1", 1, 1, "expected a definition"),
    ("let a = 1 + if c { 2 } else { 3 }", 1, 13, "put this `if` expression in parentheses"),
    ("let a = 2 ** not c", 1, 14, "put this `not` expression in parentheses"),
    ("let a = f(x).fn", 1, 14, "expected a field name or a tuple index after `.`, found keyword `fn`"),
    ("fn f() = x.+", 1, 12, "expected a field name or a tuple index after `.`"),
    ("fn f() = f(a=1, 2)", 1, 17, "a positional argument cannot follow a keyword argument"),
    ("fn f() = f(a=1, a=2)", 1, 17, "keyword argument `a` given twice"),
    ("fn f() = {a: 1, a: 2}", 1, 17, "field `a` appears twice"),
    ("fn f(x: int) = x", 1, 9, "unknown type `int`"),
    ("fn f() = 99999999999999999999", 1, 10, "does not fit in i64"),
    ("fn f() = 1e999", 1, 10, "too large for f64"),
]


@pytest.mark.parametrize(("text", "line", "col", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_syntax_error(text, line, col, message):
    with pytest.raises(DiffcSyntaxError) as info:
        parse_text(text, "bad.dfl")
    err = info.value
    assert message in err.message
    assert (err.span.line, err.span.col) == (line, col)
    assert err.render().startswith(f"bad.dfl:{line}:{col}: error: ")


@pytest.mark.parametrize(
    ("message", "snippet"),
    [(m, s) for m, snippets in _LABELS.items() for s in snippets],
)
def test_every_error_label_still_describes_its_snippets(message, snippet):
    """Grammar edits can move where a snippet fails; then its label no longer applies."""
    with pytest.raises(DiffcSyntaxError) as info:
        parse_text(snippet)
    assert info.value.message.startswith(message)


TOKENS = 'fn let if else for in import and not f x 0 1.5 ( ) { } [ ] , ; : = => -> . .. + - ** < "s" " $'.split()
TOKENS += ["#c\n", "\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=20).map(" ".join))
def test_any_text_parses_or_fails_with_a_located_syntax_error(text):
    try:
        parse_text(text)
    except DiffcSyntaxError as err:
        assert err.span.line >= 1 and err.span.col >= 1
        assert err.render()


# --- round trip of generated trees -----------------------------------------------------------

names = st.from_regex(r"[a-z_][a-z0-9_]{0,3}", fullmatch=True).filter(lambda s: s not in KEYWORDS)
OPS = ["or", "and", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "//", "%", "@", "**"]
types = st.builds(
    n.TypeAnn,
    st.sampled_from(["f64", "f32", "i64", "bool"]),
    st.none() | st.lists(names | st.integers(0, 9), max_size=3).map(tuple),
)
params = st.lists(st.builds(n.Param, names, st.none() | types), max_size=3).map(tuple)
patterns = st.recursive(
    names.map(n.PName),
    lambda sub: st.lists(sub, min_size=1, max_size=3).map(lambda ps: n.PTuple(tuple(ps))),
    max_leaves=4,
)
leaves = st.one_of(
    names.map(n.Name),
    st.integers(0, 2**63 - 1).map(lambda v: n.Num(v, False)),
    st.floats(0, allow_infinity=False).filter(lambda v: math.copysign(1, v) > 0).map(lambda v: n.Num(v, True)),
    st.booleans().map(n.Bool),
    st.from_regex(r"[a-z #(]{0,4}", fullmatch=True).map(n.Str),
)


def compound(sub):
    tuples = st.lists(sub, max_size=3).map(tuple)
    stmts = st.builds(n.Let, patterns, sub) | st.builds(n.ExprStmt, sub)
    blocks = st.builds(n.Block, st.lists(stmts, max_size=2).map(tuple), sub)
    ifs = st.builds(n.If, sub, blocks, blocks | st.builds(n.If, sub, blocks, blocks))
    slices = st.builds(n.Slice, st.none() | sub, st.none() | sub, st.none() | sub)
    keywords = st.dictionaries(names, sub, max_size=2).map(lambda d: tuple(n.Keyword(k, v) for k, v in d.items()))
    return st.one_of(
        st.builds(n.BinOp, st.sampled_from(OPS), sub, sub),
        st.builds(n.UnaryOp, st.sampled_from(["-", "not"]), sub),
        st.builds(n.Call, sub, tuples, keywords),
        st.builds(n.Index, sub, st.lists(sub | slices, min_size=1, max_size=2).map(tuple)),
        st.builds(n.Field, sub, names),
        st.builds(n.TupleIndex, sub, st.integers(0, 12)),
        st.builds(n.ArrayLit, tuples),
        st.builds(n.TupleLit, tuples),
        st.dictionaries(names, sub, min_size=1, max_size=3).map(lambda d: n.RecordLit(tuple(d.items()))),
        blocks,
        ifs,
        st.builds(n.Lambda, params, sub),
        st.builds(
            n.Comprehension,
            st.lists(st.builds(n.Iter, names, sub, sub), min_size=1, max_size=2).map(tuple),
            sub,
        ),
    )


exprs = st.recursive(leaves, compound, max_leaves=12)
items = st.one_of(
    names.map(n.Import),
    st.builds(n.LetDef, names, exprs),
    st.builds(n.FnDef, names, params, st.none() | types, exprs),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(items, max_size=3).map(lambda xs: n.Module(tuple(xs))))
def test_pretty_then_parse_gives_the_same_tree(module):
    round_trips(module)

"""Random small DFL programs against a NumPy evaluation of the same expression.

Hypothesis draws expressions over float scalars `s` and `t`, a float vector `x` (of length
0, 1 or 3) and an integer `n`: arithmetic (wrapping for integers), math functions,
comparisons in `if` and `where`, `let`, reductions, `@`, indexing, comprehensions, `map`,
`fold`, `scan` and `grad` of closures; and inputs at the edges (0, -0, infinities, NaN, tiny
and large values, empty vectors, INT64_MIN and INT64_MAX). Each program must

- compile and run, or end in a DiffcError that is not an InternalError (and it must end in
  one exactly when NumPy refuses too: `max` of an empty vector, an index past the end);
- give NumPy's value (up to rounding; NaN where NumPy has NaN);
- give the same value when its inputs are literals that LLVM folds as when they are
  run-time arguments;
- when it returns a scalar, have the same derivative by reverse mode (`grad`) as by forward
  mode (`jvp`) wherever both are finite.

The default run is short and derandomised (the same programs every time). A longer search:

    DIFFC_FUZZ_EXAMPLES=5000 python -m pytest tests/fuzz -q
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import diffc
from diffc.errors import DiffcError, InternalError

EXAMPLES = int(os.environ.get("DIFFC_FUZZ_EXAMPLES", "200"))  # about 20 s
REL = 1e-6  # vectorised exp/log/tanh/sin differ from libm's by an ulp or so, compounded
HUGE = 1e12  # beyond this, reassociated sums may round differently: values are not compared

I64_MIN, I64_MAX = -(2**63), 2**63 - 1
EDGE_FLOATS = [0.0, -0.0, 1.0, -2.5, 0.5, 3.0, 1e-300, 100.0, math.inf, -math.inf, math.nan]


class Refused(Exception):
    """NumPy has no value for the expression (max of an empty vector, an index past the end):
    diffc must refuse it with a DiffcError too."""


class Unknown(Exception):
    """The evaluator has no value to compare with (a derivative): only the no-crash checks apply."""


@dataclass(frozen=True)
class Expr:
    text: str  # DFL
    eval: Callable  # env -> NumPy value
    kind: str  # "s" float scalar, "v" float vector of the length of x, "b" bool scalar


def _noted(env, value):
    """Keep the largest finite float magnitude seen while evaluating (see HUGE)."""
    if np.asarray(value).dtype.kind != "f":
        return value
    a = np.abs(np.asarray(value, dtype=float))
    finite = a[np.isfinite(a)]
    if finite.size:
        env["__scale__"] = max(env["__scale__"], float(finite.max()))
    return value


def _node(text, fn, kind):
    return Expr(text, lambda env: _noted(env, fn(env)), kind)


UNARY = {
    "-": lambda a: -a,
    "abs": np.abs,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "sigmoid": lambda a: 1.0 / (1.0 + np.exp(-a)),
    "relu": lambda a: np.maximum(a, 0.0),
}
BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "maximum": np.maximum, "minimum": np.minimum}
COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, "==": np.equal, "!=": np.not_equal}
REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}


def _reduce(name, fn, v):
    def go(env):
        a = v.eval(env)
        if a.size == 0 and name in ("max", "min"):
            raise Refused
        return np.float64(fn(a))

    return _node(f"{name}({v.text})", go, "s")


def _index(v):
    def go(env):
        a = v.eval(env)
        if a.size == 0:
            raise Refused
        return a[0]

    return _node(f"({v.text})[0]", go, "s")


def _unary(name, a):
    text = f"-({a.text})" if name == "-" else f"{name}({a.text})"
    return _node(text, lambda env: UNARY[name](a.eval(env)), a.kind)


def _binary(name, a, b):
    text = f"maximum({a.text}, {b.text})" if name == "maximum" else f"({a.text} {name} {b.text})"
    text = f"minimum({a.text}, {b.text})" if name == "minimum" else text
    kind = "v" if "v" in (a.kind, b.kind) else "s"
    return _node(text, lambda env: BINARY[name](a.eval(env), b.eval(env)), kind)


def _trunc(x):
    """i64(x): truncation, with NaN and out-of-range values giving INT64_MIN."""
    fits = (x >= -(2.0**63)) & (x < 2.0**63)
    return np.where(fits, np.trunc(np.where(fits, x, 0.0)), -(2.0**63)).astype(np.int64)


def _i64_round_trip(a):
    return _node(f"f64(i64({a.text}))", lambda env: _trunc(a.eval(env)).astype(float), a.kind)


INT_UNARY = {"-": np.negative, "abs": np.abs}
INT_BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "maximum": np.maximum, "minimum": np.minimum}


def _int_expr(draw, sub):
    """An i64 scalar: wrapping arithmetic (as NumPy's), or i64() of a float."""
    choice = draw(st.sampled_from(["unary", "binary", "binary", "trunc"]))
    if choice == "unary":
        op, a = draw(st.sampled_from(sorted(INT_UNARY))), draw(sub("i"))
        return _node(f"-({a.text})" if op == "-" else f"abs({a.text})", lambda env: INT_UNARY[op](a.eval(env)), "i")
    if choice == "binary":
        op, a, b = draw(st.sampled_from(sorted(INT_BINARY))), draw(sub("i")), draw(sub("i"))
        text = f"{op}({a.text}, {b.text})" if op in ("maximum", "minimum") else f"({a.text} {op} {b.text})"
        return _node(text, lambda env: INT_BINARY[op](a.eval(env), b.eval(env)), "i")
    a = draw(sub("s"))
    return _node(f"i64({a.text})", lambda env: _trunc(a.eval(env))[()], "i")


@st.composite
def exprs(draw, kind: str, depth: int, scope: tuple):
    """An expression of `kind` using the names in scope ((name, kind, getter), ...)."""
    names = [(n, g) for n, k, g in scope if k == kind]
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        if kind == "b":
            a = draw(exprs("s", 0, scope))
            return _node(f"({a.text} < 0.5)", lambda env: a.eval(env) < 0.5, "b")
        if kind == "s" and (not names or draw(st.booleans())):
            c = draw(st.sampled_from([0.0, 1.0, -2.5, 0.5, 2.0]))
            return _node(f"({c!r})", lambda env: np.float64(c), "s")
        if kind == "i" and draw(st.booleans()):
            c = draw(st.sampled_from([0, 1, -3, 7]))
            return _node(f"({c})", lambda env: np.int64(c), "i")
        name, get = draw(st.sampled_from(names))
        return _node(name, get, kind)
    sub = lambda k: exprs(k, depth - 1, scope)  # noqa: E731
    if kind == "b":
        a, b = draw(sub("s")), draw(sub("s"))
        op = draw(st.sampled_from(sorted(COMPARE)))
        return _node(f"({a.text} {op} {b.text})", lambda env: COMPARE[op](a.eval(env), b.eval(env)), "b")
    if kind == "i":
        return _int_expr(draw, sub)
    choices = ["unary", "binary", "let", "if", "where", "i64"]
    choices += ["reduce", "index", "fold", "grad", "f64", "dot"] if kind == "s" else ["map", "for", "scan"]
    choice = draw(st.sampled_from(choices))
    if choice == "dot":
        a, b = draw(sub("v")), draw(sub("v"))
        return _node(f"({a.text} @ {b.text})", lambda env: np.float64(np.dot(a.eval(env), b.eval(env))), "s")
    if choice == "scan":  # running sums, as np.cumsum adds them (in order)
        v = draw(sub("v"))
        return _node(
            f"scan(fn(c, e) => (c + e, c + e), 0.0, {v.text}).1", lambda env: np.cumsum(v.eval(env), dtype=float), "v"
        )
    if choice == "f64":
        a = draw(sub("i"))
        return _node(f"f64({a.text})", lambda env: np.float64(a.eval(env)), "s")
    if choice == "unary":
        return _unary(draw(st.sampled_from(sorted(UNARY))), draw(sub(kind)))
    if choice == "binary":
        a = draw(sub(kind))
        b = draw(sub(draw(st.sampled_from(["s", "v"])) if kind == "v" else "s"))
        a, b = (a, b) if draw(st.booleans()) else (b, a)
        return _binary(draw(st.sampled_from(sorted(BINARY))), a, b)
    if choice == "i64":
        return _i64_round_trip(draw(sub(kind)))
    if choice == "let":
        name = f"l{depth}"
        value = draw(sub("s"))
        body = draw(exprs(kind, depth - 1, scope + ((name, "s", lambda env: env[name]),)))
        return _node(
            f"({{ let {name} = {value.text}; {body.text} }})",
            lambda env: body.eval({**env, name: value.eval(env)}),
            kind,
        )
    if choice == "if":
        c, a, b = draw(sub("b")), draw(sub(kind)), draw(sub(kind))
        return _node(
            f"(if {c.text} {{ {a.text} }} else {{ {b.text} }})",
            lambda env: a.eval(env) if c.eval(env) else b.eval(env),
            kind,
        )
    if choice == "where":
        c, a, b = draw(sub("b")), draw(sub(kind)), draw(sub(kind))
        return _node(
            f"where({c.text}, {a.text}, {b.text})", lambda env: np.where(c.eval(env), a.eval(env), b.eval(env)), kind
        )
    if choice == "reduce":
        name = draw(st.sampled_from(sorted(REDUCE)))
        return _reduce(name, REDUCE[name], draw(sub("v")))
    if choice == "index":
        return _index(draw(sub("v")))
    if choice == "map":
        e = f"e{depth}"
        v = draw(sub("v"))
        body = draw(exprs("s", depth - 1, scope + ((e, "s", lambda env: env[e]),)))
        return _node(
            f"map(fn({e}) => {body.text}, {v.text})",
            lambda env: np.array([body.eval({**env, e: xi}) for xi in v.eval(env)], dtype=float).reshape(-1),
            "v",
        )
    if choice == "for":
        k = f"k{depth}"
        body = draw(exprs("s", depth - 1, scope + ((f"x[{k}]", "s", lambda env: env["x"][env[k]]),)))
        return _node(
            f"(for {k} in 0..len(x) => {body.text})",
            lambda env: np.array([body.eval({**env, k: i}) for i in range(len(env["x"]))], dtype=float).reshape(-1),
            "v",
        )
    if choice == "fold":
        acc, e = f"a{depth}", f"e{depth}"
        v = draw(sub("v"))
        inner = scope + ((acc, "s", lambda env: env[acc]), (e, "s", lambda env: env[e]))
        body = draw(exprs("s", depth - 1, inner))

        def go(env):
            a = np.float64(0.0)
            for xi in v.eval(env):
                a = np.float64(body.eval({**env, acc: a, e: xi}))
            return a

        return _node(f"fold(fn({acc}, {e}) => {body.text}, 0.0, {v.text})", go, "s")
    # grad of a closure at a point: diffc's value is only checked for not crashing
    p = f"p{depth}"
    at = draw(sub("s"))
    body = draw(exprs("s", depth - 1, scope + ((p, "s", lambda env: env[p]),)))

    def unknown(env):
        at.eval(env)
        raise Unknown

    return _node(f"grad(fn({p}) => {body.text})({at.text})", unknown, "s")


NEEDS_ITEMS = re.compile(r"\b(max|min)\(|\)\[0\]")  # max/min of a vector, or its first element


INPUTS = (
    ("s", "s", lambda env: env["s"]),
    ("t", "s", lambda env: env["t"]),
    ("x", "v", lambda env: env["x"]),
    ("n", "i", lambda env: env["n"]),
)
floats = st.sampled_from(EDGE_FLOATS) | st.floats(-10, 10)
ints = st.sampled_from([0, -1, 3, I64_MIN, I64_MAX]) | st.integers(-50, 50)


def literal(v) -> str:
    """A DFL expression whose value is exactly the number or vector v (a constant LLVM folds)."""
    if isinstance(v, int):
        return "(-9223372036854775807 - 1)" if v == I64_MIN else f"({v})"
    if isinstance(v, np.ndarray):
        return "zeros([0])" if v.size == 0 else "[" + ", ".join(literal(float(a)) for a in v) + "]"
    if math.isnan(v):
        return "(0.0 / 0.0)"
    if math.isinf(v):
        return "(1.0 / 0.0)" if v > 0 else "(-1.0 / 0.0)"
    return f"({v!r})"


def agree(got, want, scale: float) -> bool:
    """Equal shapes; equal integers; NaN where want has NaN; equal infinities; finite values
    within REL."""
    if np.asarray(want).dtype.kind == "i":
        return np.asarray(got).dtype.kind == "i" and np.array_equal(got, want)
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        return False
    if scale > HUGE:
        return True
    with np.errstate(all="ignore"):
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        near = np.isfinite(got) & np.isfinite(want) & (np.abs(got - want) <= REL * (1.0 + scale))
    return bool(np.all(same | near))


def run(text: str, *args):
    """diffc's value of main(*args), or the DiffcError it raised; never anything else."""
    try:
        return diffc.compile(text).main(*args)
    except InternalError as e:
        pytest.fail(f"internal error for\n{text}\n{e}")
    except DiffcError as e:
        return e


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    e=st.sampled_from(["s", "v", "i"]).flatmap(lambda k: exprs(k, 3, INPUTS)),
    n=ints,
    s=floats,
    t=floats,
    x=st.lists(floats, min_size=0, max_size=3).filter(lambda xs: len(xs) != 2).map(lambda xs: np.array(xs, float)),
)
def test_random_programs(e, n, s, t, x):
    env = {"s": np.float64(s), "t": np.float64(t), "x": x, "n": np.int64(n), "__scale__": 0.0}
    try:
        if x.size == 0 and NEEDS_ITEMS.search(e.text):  # shapes are static: refused in any branch
            raise Refused
        with np.errstate(all="ignore"):
            want = e.eval(env)
    except Refused:
        want = Refused
    except Unknown:
        want = Unknown
    program = f"fn main(s, t, x, n) = {e.text}\n"
    got = run(program, s, t, x, n)
    if want is Refused or isinstance(got, DiffcError):
        assert want is Refused and isinstance(got, DiffcError), f"{program}\ndiffc: {got!r}\nNumPy: {want!r}"
        return
    if want is not Unknown:
        assert agree(got, want, env["__scale__"]), f"{program}{s=} {t=} {x=} {n=}\ndiffc: {got!r}\nNumPy: {want!r}"
    lets = " ".join(f"let {k} = {literal(v)};" for k, v in dict(s=s, t=t, x=x, n=n).items())
    folded = run(f"fn main() = {{ {lets} {e.text} }}\n")
    assert agree(folded, got, env["__scale__"] if want is not Unknown else 0.0), (
        f"{program}folded: {folded!r}, run: {got!r}"
    )
    if e.kind == "s":
        _check_derivatives(program, s, t, x, n)


def test_fold_whose_step_returns_a_captured_value():
    """Found by this fuzz test: reverse mode lost a loop carry that is a captured value."""
    m = diffc.compile("fn f(s, x) = fold(fn(a, e) => s, 0.0, x)\nfn g(s, x) = scan(fn(a, e) => (s, a), 0.0, x).0")
    x = np.array([2.0, 3.0])
    assert diffc.grad(m.f)(1.5, x) == diffc.jvp(m.f)(1.5, x, 1.0, np.zeros(2))[1] == 1.0
    assert diffc.grad(m.g)(1.5, x) == 1.0


def _check_derivatives(program, s, t, x, n):
    """grad (reverse mode) and jvp (forward mode) with respect to s agree where both are finite."""
    m = diffc.compile(program)
    try:
        by_grad = diffc.grad(m.main, 0)(s, t, x, n)
        _, by_jvp = diffc.jvp(m.main)(s, t, x, n, 1.0, 0.0, np.zeros_like(x), 0)
    except InternalError as err:
        pytest.fail(f"internal error for the derivative of\n{program}\n{err}")
    except DiffcError:
        return  # (a derivative diffc does not support yet is a located error: fine here)
    if np.isfinite(by_grad) and np.isfinite(by_jvp):
        assert abs(by_grad - by_jvp) <= REL * (1 + abs(by_grad)), f"{program}grad {by_grad!r} vs jvp {by_jvp!r}"

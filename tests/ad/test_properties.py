"""Property tests: random small DFL programs, written as source text, differentiated by diffc
and checked against finite differences.

A program is built from typed terms over x, y: f64[3], m: f64[3, 3] and s: f64, using
elementwise functions, arithmetic, reductions (with and without axis), `@` in every rank
combination, `fold` over the rows of a matrix (whose step function captures the program's
variables), `map` over the rows of a matrix and over the windows of two vectors joined (whose
backward is batched when its body is array arithmetic: ad/batch.py), `if` on a data-dependent
condition, `where` and `maximum`. Every function is kept
smooth and bounded away from its singularities (log(1 + e*e), a / (1.5 + sin(b)), ...), so the
only kinks are those of if/where/maximum/max, which random inputs miss almost surely.

For each program
    fn fv(x, y, m, s) = <a vector term V>
    fn fs(x, y, m, s) = <a scalar term S> + sum(V)
we check grad(fs) against central differences, element by element, jvp(fv) against a central
difference along a random tangent, and <u, jvp(fv) v> against <vjp(fv) u, v>.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import diffc

from .fd import assert_close, directional, inner, numerical_grad, random_like

RTOL = 1e-5  # the random compositions reach values of a few hundred; 1e-6 of that is FD noise
N = 3

# --- the program generator ----------------------------------------------------------------------

UNARY = ["sin", "cos", "tanh", "sigmoid"]
SAFE = [
    "log(1.0 + {a} * {a})",
    "sqrt(1.0 + {a} * {a})",
    "exp(tanh({a}))",
    "log1p(sigmoid({a}))",
    "({a}) ** 2",
    "abs({a}) ** 1.5",
]


@st.composite
def term(draw, ty: str, depth: int, env: dict, compound: bool = False):
    """DFL source of a term of type `ty` ("vec", "mat", "scal") over the variables in env;
    `compound`: not a bare variable."""
    names = env[ty]
    if not compound and (depth == 0 or draw(st.integers(0, 3)) == 0):
        return draw(st.sampled_from(names))

    def sub(t, d=depth - 1):
        return draw(term(t, d, env))

    rule = draw(st.sampled_from(RULES[ty]))
    return rule(draw, sub, depth, env)


def _unary(ty):
    def rule(draw, sub, depth, env):
        return f"{draw(st.sampled_from(UNARY))}({sub(ty)})"

    return rule


def _safe(ty):
    def rule(draw, sub, depth, env):
        return "(" + draw(st.sampled_from(SAFE)).format(a=sub(ty)) + ")"

    return rule


def _binary(ty):
    def rule(draw, sub, depth, env):
        op = draw(st.sampled_from(["+", "-", "*"]))
        return f"({sub(ty)} {op} {sub(ty)})"

    return rule


def _div(ty):
    return lambda draw, sub, depth, env: f"({sub(ty)} / (1.5 + sin({sub(ty)})))"


def _scaled(ty):
    return lambda draw, sub, depth, env: f"({sub('scal')} * {sub(ty)})"


def _if(ty):
    return lambda draw, sub, depth, env: f"(if {sub('scal')} > 0.0 {{ {sub(ty)} }} else {{ {sub(ty)} }})"


def _where(ty):
    return lambda draw, sub, depth, env: f"where({sub(ty)} > 0.0, {sub(ty)}, {sub(ty)})"


def _maximum(ty):
    return lambda draw, sub, depth, env: f"{draw(st.sampled_from(['maximum', 'minimum']))}({sub(ty)}, {sub(ty)})"


def _fold(draw, sub, depth, env):
    """fold over the rows of a matrix term; the step function sees h, r and captures the rest."""
    inner_env = {"vec": env["vec"] + ["h", "r"], "mat": env["mat"], "scal": env["scal"]}
    body = draw(term("vec", max(depth - 1, 1), inner_env))
    return f"fold(fn(h, r) => tanh(h * {body} + r), {sub('vec')}, {sub('mat')})"


def _map_rows(draw, sub, depth, env):
    """map over the rows of a matrix term; the body sees r and captures the rest."""
    inner_env = {"vec": env["vec"] + ["r"], "mat": env["mat"], "scal": env["scal"]}
    body = draw(term("scal", max(depth - 1, 1), inner_env))
    return f"map(fn(r) => {body}, {sub('mat')})"


def _map_windows(draw, sub, depth, env):
    """sum of a map over the windows of N of two vector terms joined (N + 1 windows: the
    backward of a body of array arithmetic is batched, ad/batch.py)."""
    inner_env = {"vec": env["vec"] + ["w"], "mat": env["mat"], "scal": env["scal"]}
    body = draw(term("scal", max(depth - 1, 1), inner_env))
    return f"sum(map(fn(w) => {body}, windows(concat({sub('vec')}, {sub('vec')}), {N})))"


RULES = {
    "vec": [
        _unary("vec"),
        _safe("vec"),
        _binary("vec"),
        _div("vec"),
        _scaled("vec"),
        _if("vec"),
        _where("vec"),
        _maximum("vec"),
        _fold,
        lambda draw, sub, depth, env: f"({sub('mat')} @ {sub('vec')})",
        lambda draw, sub, depth, env: f"({sub('vec')} @ {sub('mat')})",
        _map_rows,
        lambda draw, sub, depth, env: (
            f"{draw(st.sampled_from(['sum', 'mean', 'max']))}({sub('mat')}, axis={draw(st.integers(0, 1))})"
        ),
    ],
    "mat": [
        _unary("mat"),
        _safe("mat"),
        _binary("mat"),
        _scaled("mat"),
        _if("mat"),
        lambda draw, sub, depth, env: f"({sub('mat')} @ {sub('mat')})",
        lambda draw, sub, depth, env: f"transpose({sub('mat')})",
        lambda draw, sub, depth, env: f"({sub('vec')} * {sub('mat')})",
    ],
    "scal": [
        _unary("scal"),
        _safe("scal"),
        _binary("scal"),
        _div("scal"),
        _if("scal"),
        lambda draw, sub, depth, env: f"{draw(st.sampled_from(['sum', 'mean', 'max', 'min']))}({sub('vec')})",
        lambda draw, sub, depth, env: f"sum({sub('mat')})",
        _map_windows,
        lambda draw, sub, depth, env: f"({sub('vec')} @ {sub('vec')})",
    ],
}

ENV = {"vec": ["x", "y"], "mat": ["m"], "scal": ["s"]}


@st.composite
def programs(draw):
    v = draw(term("vec", 3, ENV, compound=True))
    s = draw(term("scal", 3, ENV, compound=True))
    return f"fn fv(x, y, m, s) = {v}\nfn fs(x, y, m, s) = {s} + sum(fv(x, y, m, s))\n"


def inputs(seed: int) -> tuple:
    r = np.random.default_rng(seed)
    return r.normal(size=N), r.normal(size=N), r.normal(size=(N, N)) / 2, float(r.normal())


# --- the properties -------------------------------------------------------------------------------

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(src=programs(), seed=st.integers(0, 2**32 - 1))
def test_grad_matches_finite_differences(src, seed):
    note(src)
    m = diffc.compile(src, "generated.dfl")
    args = inputs(seed)
    got = diffc.grad(m.fs, (0, 1, 2, 3))(*args)
    assert isinstance(got, tuple) and len(got) == 4
    assert_close(list(got), numerical_grad(m.fs, args, (0, 1, 2, 3)), RTOL, "grad vs finite differences")


@SETTINGS
@given(src=programs(), seed=st.integers(0, 2**32 - 1))
def test_vjp_and_jvp_agree(src, seed):
    note(src)
    m = diffc.compile(src, "generated.dfl")
    args = inputs(seed)
    rng = np.random.default_rng(seed + 1)
    v = random_like(args, rng)
    y, dy = diffc.jvp(m.fv)(*args, *v)
    assert_close(y, m.fv(*args), 1e-12, "jvp's value vs fv")
    assert_close(dy, directional(m.fv, args, v)[0], RTOL, "jvp vs finite differences")
    u = random_like(y, rng)
    cts = diffc.vjp(m.fv)(*args, u)
    assert isinstance(cts, tuple) and len(cts) == 4
    assert_close(inner(u, dy), inner(cts, v), RTOL, "<u, J v> by jvp vs by vjp")

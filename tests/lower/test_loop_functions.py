"""A long loop body is lowered as a never-inlined function of its own, called once per
iteration (Note [Loop functions] in lower/bodies.py): for map, scan and while bodies, nested
ones and their derivatives, the values are the same bits as with the body lowered inline, a
failure inside the body is the same located error, and a parallel map whose long body cannot
fail still runs on the threads, the same bits at 1, 2 and 3 threads. Short bodies (every
benchmark workload's) stay inline."""

from __future__ import annotations

import re

import numpy as np
import pytest
from llvmlite import ir
from support.native import ir_of, on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc.errors import BoundsError, DiffcError
from diffc.lower import bodies
from diffc.lower.emit import COPY_SYMBOL, _copy_function
from diffc.lower.llvm import ModuleState, lower_program

# rk4 of a 5-layer MLP: a body of about 80 equations and 1,500 lines of LLVM IR or more
SRC = """
fn layer(w, b, h) = tanh(w @ h + b)
fn f(p, y) = p.w3 @ layer(p.w2, p.b2, layer(p.w1, p.b1, layer(p.w2, p.b2, layer(p.w1, p.b1, y)))) + p.b3
fn rk4(p, y, h) {
    let k1 = f(p, y);
    let k2 = f(p, y + 0.5 * h * k1);
    let k3 = f(p, y + 0.5 * h * k2);
    let k4 = f(p, y + h * k3);
    y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
}
fn rows(p, y0s, h) = map(fn(y0) => rk4(p, y0, h), y0s)
fn path(p, y0, ts, h) {
    let (_, ys) = scan(fn(y, t) { let y2 = rk4(p, y, h * t); (y2, y2) }, y0, ts);
    ys
}
fn paths(p, y0s, ts, h) = map(fn(y0) => path(p, y0, ts, h), y0s)
fn loss(p, y0s, ts, h) = sum(paths(p, y0s, ts, h) ** 2)
fn back(p, y0s, ts, h) = grad(loss)(p, y0s, ts, h)
fn until(p, y0, h, n) = while(fn(s) => s.n < n, fn(s) => {y: rk4(p, s.y, h), n: s.n + 1}, {y: y0, n: 0}).y
fn until_loss(p, y0, h, n) = sum(until(p, y0, h, n) ** 2)
fn until_back(p, y0, h, n) = grad(until_loss)(p, y0, h, n)
fn picked(p, y0, v, ids, h) {
    let (_, ys) = scan(fn(y, i) { let y2 = rk4(p, y, h) + v[i]; (y2, y2) }, y0, ids);
    ys
}
fn rows_back(p, y0s, h) = grad(fn(p) => sum(rows(p, y0s, h) ** 2))(p)
fn deep(n) = if n <= 0 { 0.0 } else { 1.0 + deep(n - 1) }
fn calls(p, y0, ns, h) {
    let (_, ys) = scan(fn(y, n) { let y2 = rk4(p, y, h) * deep(n); (y2, y2) }, y0, ns);
    ys
}
"""

WIDTH = 8


def params(seed=0, width=WIDTH):
    rng = np.random.default_rng(seed)
    p = {f"w{k}": rng.standard_normal((width, width)) * 0.3 for k in (1, 2, 3)}
    p.update({f"b{k}": rng.standard_normal(width) * 0.1 for k in (1, 2, 3)})
    return p


def inline_and_functions(monkeypatch, fn: str, *args, src=SRC, every=False):
    """(the results with every loop body lowered inline, with the long ones as functions, or
    with `every` body as a function), each from a module of its own."""
    results = []
    for min_eqns, long_lines in ((10**9, 0), (1, 0) if every else (bodies.MIN_EQNS, bodies.LONG_LINES)):
        monkeypatch.setattr(bodies, "MIN_EQNS", min_eqns)
        monkeypatch.setattr(bodies, "LONG_LINES", long_lines)
        results.append(getattr(diffc.compile(src), fn)(*args))
    monkeypatch.undo()
    return results


def assert_close(a, b):
    """The same values but for the last bits of the matrix products, whose sums LLVM may
    reassociate (See Note [Kernel or BLAS] in prims/linalg.py: as BLAS sums, in any order)."""
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)


def assert_same_bits(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def _leaves(v):
    if isinstance(v, dict):
        return [x for k in sorted(v) for x in _leaves(v[k])]
    if isinstance(v, tuple | list):
        return [x for item in v for x in _leaves(item)]
    return [v]


def functions(fn: str, *args) -> dict[str, str]:
    """name -> text of each function of the LLVM IR of `fn` at these arguments."""
    text = str(lower_program(ir_of(diffc.compile(SRC), fn, *args)).module)
    return {part.split('"')[1]: part for part in text.split("\ndefine ")[1:]}


def loop_functions(fns: dict[str, str]) -> list[str]:
    return [name for name in fns if re.search(r"\.loop(\.\d+)?$", name)]


def test_long_map_scan_and_while_bodies_become_functions():
    p, y0s = params(), np.ones((3, WIDTH))
    fns = functions("rows", p, y0s, 0.1)
    (name,) = loop_functions(fns)
    assert "noinline" in fns[name]
    assert f'call void @"{name}"' in "".join(t for n, t in fns.items() if n != name)
    assert len(loop_functions(functions("path", p, y0s[0], np.ones(4), 0.1))) == 1
    assert len(loop_functions(functions("until", p, y0s[0], 0.1, 3))) == 1


def test_short_bodies_stay_inline():
    m = diffc.compile("fn f(xs) { let (c, ys) = scan(fn(c, x) => (c + x, c * x), 0.0, xs); (c, ys) }")
    text = str(lower_program(ir_of(m, "f", np.ones(5))).module)
    names = re.findall(r'define [^@]*@"([^"]+)"', text)
    assert names and not loop_functions(dict.fromkeys(names))


def test_nested_loops_give_nested_functions_and_the_same_gradient(monkeypatch):
    p, y0s, ts = params(), np.random.default_rng(1).standard_normal((3, WIDTH)), np.linspace(0.5, 1.0, 5)
    fns = functions("back", p, y0s, ts, 0.05)
    names = loop_functions(fns)
    assert len(names) >= 2  # the forward's step and its backward's, each inside a map's row
    # each called from the function of the map's body or from a piece of the map on the threads
    for name in names:
        assert any(f'call void @"{name}"' in fns[n] for n in fns if n != name)
    inline, outlined = inline_and_functions(monkeypatch, "back", p, y0s, ts, 0.05)
    assert_close(inline, outlined)
    inline, outlined = inline_and_functions(monkeypatch, "paths", p, y0s, ts, 0.05)
    assert_close(inline, outlined)


# no products: the same bits with every loop body a function as with all of them inline
ELEMENTWISE = """
fn f(p, y) = tanh(p.a * y + p.b) * p.c - sin(y) / (1.0 + y * y)
fn path(p, y0, ts) {
    let (_, ys) = scan(fn(y, t) { let y2 = y + t * f(p, y); (y2, y2) }, y0, ts);
    ys
}
fn paths(p, y0s, ts) = map(fn(y0) => path(p, y0, ts), y0s)
fn thrice(p, y) = while(fn(s) => s.n < 3, fn(s) => {y: f(p, s.y), n: s.n + 1}, {y: y, n: 0}).y
fn loss(p, y0s, ts) = sum(paths(p, y0s, ts) ** 2) + sum(thrice(p, y0s[0]))
fn back(p, y0s, ts) = grad(loss)(p, y0s, ts)
"""


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_body_a_function_gives_the_same_bits(monkeypatch, dtype):
    rng = np.random.default_rng(7)
    p = {k: rng.standard_normal(5).astype(dtype) for k in "abc"}
    y0s, ts = rng.standard_normal((3, 5)).astype(dtype), np.linspace(0.1, 0.3, 4).astype(dtype)
    y0s[1, 2], p["b"][3] = np.nan, np.inf
    for fn in ("paths", "back"):
        inline, outlined = inline_and_functions(monkeypatch, fn, p, y0s, ts, src=ELEMENTWISE, every=True)
        assert_same_bits(inline, outlined)


def numpy_rk4(p, y, h):
    def f(y):
        for _ in range(2):
            y = np.tanh(p["w2"] @ np.tanh(p["w1"] @ y + p["b1"]) + p["b2"])
        return p["w3"] @ y + p["b3"]

    k1 = f(y)
    k2 = f(y + 0.5 * h * k1)
    k3 = f(y + 0.5 * h * k2)
    k4 = f(y + h * k3)
    return y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def test_values_match_numpy(monkeypatch):
    p, y0s, ts = params(2), np.random.default_rng(3).standard_normal((4, WIDTH)), np.array([1.0, 0.5, 2.0])
    m = diffc.compile(SRC)
    got = m.paths(p, y0s, ts, 0.1)
    for r, y in enumerate(y0s):
        for k, t in enumerate(ts):
            y = numpy_rk4(p, y, 0.1 * t)
            np.testing.assert_allclose(got[r, k], y, rtol=1e-12, atol=1e-12)
    y = y0s[0]
    for _ in range(3):
        y = numpy_rk4(p, y, 0.1)
    np.testing.assert_allclose(m.until(p, y0s[0], 0.1, 3), y, rtol=1e-12, atol=1e-12)
    inline, outlined = inline_and_functions(monkeypatch, "until_back", p, y0s[0], 0.1, 3)
    assert_close(inline, outlined)
    assert np.all(np.isfinite(outlined["w1"]))


def test_a_zero_trip_loop_and_edge_values(monkeypatch):
    p = params(4)
    p["b1"][0] = np.inf  # tanh(inf) = 1: finite; NaN propagates alike either way
    p["b2"][1] = np.nan
    y0s = np.zeros((2, WIDTH))
    inline, outlined = inline_and_functions(monkeypatch, "paths", p, y0s, np.ones(3), 0.1)
    assert np.array_equal(np.isnan(inline), np.isnan(outlined)) and np.isnan(outlined).any()
    inline, outlined = inline_and_functions(monkeypatch, "until", p, y0s[0], 0.1, 0)
    assert_same_bits(inline, outlined)
    assert np.array_equal(outlined, y0s[0])
    empty = np.zeros((0, WIDTH))
    assert diffc.compile(SRC).rows(params(), empty, 0.1).shape == (0, WIDTH)


def located_error(fn, *args) -> str:
    with pytest.raises(DiffcError) as info:
        fn(*args)
    return str(info.value)


def test_a_failure_inside_a_body_function_is_the_same_located_error(monkeypatch):
    p, y0, v = params(), np.ones(WIDTH), np.ones((3, WIDTH))
    ids = np.array([0, 2, 7, 1])  # 7 is out of range in the third iteration
    messages = []
    for min_eqns in (10**9, bodies.MIN_EQNS):
        monkeypatch.setattr(bodies, "MIN_EQNS", min_eqns)
        m = diffc.compile(SRC)
        with pytest.raises(BoundsError) as info:
            m.picked(p, y0, v, ids, 0.1)
        messages.append(str(info.value))
        assert np.all(np.isfinite(m.picked(p, y0, v, np.array([0, -1, 2]), 0.1)))
    assert len(loop_functions(functions("picked", p, y0, v, ids, 0.1))) == 1
    assert messages[0] == messages[1]
    line = next(k for k, text in enumerate(SRC.splitlines(), 1) if "+ v[i]" in text)
    assert messages[1].startswith(f"<string>:{line}:") and "index 7 is out of bounds" in messages[1]


def test_a_body_that_calls_a_recursive_function(monkeypatch):
    p, y0 = params(), np.ones(WIDTH) * 0.1
    inline, outlined = inline_and_functions(monkeypatch, "calls", p, y0, np.array([1, 3, 2]), 0.1)
    assert_close(inline, outlined)
    assert len(loop_functions(functions("calls", p, y0, np.array([1, 3, 2]), 0.1))) == 1
    messages = []  # too deep a recursion, from the function of the body and from the body inline
    for min_eqns in (bodies.MIN_EQNS, 10**9):
        monkeypatch.setattr(bodies, "MIN_EQNS", min_eqns)
        messages.append(located_error(diffc.compile(SRC).calls, p, y0, np.array([1, 10**6, 2]), 0.1))
    assert messages[0] == messages[1] and "deep" in messages[0]


def test_a_parallel_map_with_a_long_body_runs_on_the_threads():
    p = params(5, width=16)
    y0s = np.random.default_rng(6).standard_normal((96, 16))
    fns = functions("rows", p, y0s, 0.1)
    (name,) = loop_functions(fns)
    pieces = [n for n in fns if ".par" in n and f'call void @"{name}"' in fns[n]]
    assert pieces, "the map's rows are not split among threads"
    m = diffc.compile(SRC)
    results = on_each_count(lambda: m.rows(p, y0s, 0.1))
    for r in results[1:]:
        assert np.array_equal(r, results[0])
    for k in (0, 50, 95):
        np.testing.assert_allclose(results[0][k], numpy_rk4(p, y0s[k], 0.1), rtol=1e-12, atol=1e-12)


def test_a_map_backward_in_blocks_calls_its_long_body_from_the_threads(monkeypatch):
    """The backward of a map over many rows runs in blocks on the threads (Note [Sums in
    blocks] in prims/scan.py); its long body is a function called from each block's piece."""
    p = params(7, width=16)
    y0s = np.random.default_rng(8).standard_normal((96, 16))
    fns = functions("rows_back", p, y0s, 0.1)
    pieces = [n for n in fns if ".par" in n and "blocks.par" in fns[n]]
    assert pieces and any(f'call void @"{name}"' in fns[n] for n in pieces for name in loop_functions(fns))
    m = diffc.compile(SRC)
    results = on_each_count(lambda: m.rows_back(p, y0s, 0.1))
    for r in results[1:]:
        assert_same_bits(r, results[0])
    inline, functions_ = inline_and_functions(monkeypatch, "rows_back", p, y0s, 0.1)
    assert_close(functions_, inline)
    assert_close(results[0], inline)


PRINTS = """
fn f(xs) {
    let (c, ys) = scan(fn(c, x) { print("c", c); let y = sin(c) * x + 1.0; (c + y, y * 2.0) }, 0.5, xs);
    let z = map(fn(x) { print("x", x); x * 3.0 }, ys);
    (c, z, xs[2])
}
"""


@pytest.mark.parametrize("long_lines", [0, 10**9])  # every body a function; every one tried and dropped
def test_prints_in_bodies_kept_or_dropped_as_functions(monkeypatch, capsys, long_lines):
    xs = np.arange(4.0)
    inline = diffc.compile(PRINTS).f(xs)
    printed = capsys.readouterr().out
    monkeypatch.setattr(bodies, "MIN_EQNS", 1)
    monkeypatch.setattr(bodies, "LONG_LINES", long_lines)
    assert_same_bits(diffc.compile(PRINTS).f(xs), inline)
    assert capsys.readouterr().out == printed and printed.count("x ") == 4


def test_a_short_bodys_trial_keeps_the_modules_own_functions():
    """A body's function found short is removed with what it defined, but for the module's own
    functions it made first (the copy loop, libm's wrappers), which are looked up by name: a
    later copy of the enclosing function found no copy loop and defined it again under a name
    taken (the neural ODE's training step failed to compile)."""
    ms = ModuleState("t")
    before = set(ms.module.globals)
    trial = ir.Function(ms.module, ir.FunctionType(ir.VoidType(), []), "dfl.main.loop")
    ir.IRBuilder(trial.append_basic_block()).ret_void()
    copy = _copy_function(ms.module)
    bodies._drop(ms, set(ms.module.globals) - before)
    assert "dfl.main.loop" not in ms.module.globals
    assert _copy_function(ms.module) is copy and ms.module.globals[COPY_SYMBOL] is copy

"""Derivatives of derivatives through `while` and recursion (See Note [Differentiating a tape]
in ad/via.py): a meta-gradient through Newton's method, Horner's rule written recursively, a
recursive tree sum; checked against finite differences of the lower order and against the same
model written with a static loop (iterate, fold) or in closed form."""

from __future__ import annotations

import functools
import textwrap

import numpy as np
import pytest

import diffc

from .fd import assert_close, directional


@functools.cache
def mod(src: str) -> diffc.Module:
    return diffc.compile(textwrap.dedent(src), "loops_higher_order.dfl")


# --- Newton's method inside a meta-gradient ---------------------------------------------------

# The root of x^3 + p0 x + p1 by Newton's method until it converges; the loss of the root.
NEWTON = """
fn g(x, p) = x * x * x + p[0] * x + p[1]
fn step(x, p) = x - g(x, p) / (3.0 * x * x + p[0])
fn root(p) = while(fn(s) => abs(g(s.x, p)) > 1e-14 and s.n < 60, fn(s) => {x: step(s.x, p), n: s.n + 1}, {x: 1.0, n: 0})
fn loss(p) = (root(p).x - 0.5) ** 2 + p[2] * root(p).x
fn dloss(p) = grad(loss)(p)
fn hvp_rev(p, v) = grad(fn(p) => sum(dloss(p) * v))(p)
fn hvp_fwd(p, v) = jvp(dloss, (p,), (v,)).1
fn third(p, v) = grad(fn(p) => sum(hvp_rev(p, v) * v))(p)
fn steps(p) = root(p).n
"""


def newton_static(n: int) -> str:
    """The same model with the trip count fixed: iterate over n steps."""
    return NEWTON + textwrap.dedent(f"""
    fn root_s(p) = iterate(fn(x) => step(x, p), 1.0, {n})
    fn loss_s(p) = (root_s(p) - 0.5) ** 2 + p[2] * root_s(p)
    fn hvp_s(p, v) = grad(fn(p) => sum(grad(loss_s)(p) * v))(p)
    fn third_s(p, v) = grad(fn(p) => sum(hvp_s(p, v) * v))(p)
    """)


P = np.array([2.0, -1.5, 0.3])
V = np.array([0.4, -0.7, 1.1])


def test_newton_meta_gradient_second_order_matches_finite_differences():
    m = mod(NEWTON)
    want = directional(m.dloss, (P,), (V,))[0]  # the Hessian along v, from the gradient
    assert_close(m.hvp_rev(P, V), want, 1e-6, "grad of grad")
    assert_close(m.hvp_fwd(P, V), want, 1e-6, "jvp of grad")


def test_newton_meta_gradient_matches_the_loop_with_a_static_count():
    m = mod(NEWTON)
    s = mod(newton_static(m.steps(P)))
    assert_close(m.hvp_rev(P, V), s.hvp_s(P, V), 1e-12, "grad of grad")
    assert_close(m.hvp_fwd(P, V), s.hvp_s(P, V), 1e-12, "jvp of grad")
    assert_close(m.third(P, V), s.third_s(P, V), 1e-10, "third order")


def test_pullback_of_a_pullback_through_while():
    m = mod(
        NEWTON
        + """
        fn pb(p) = vjp(loss, p).1(1.0).0
        fn vjp_vjp(p, v) = vjp(pb, p).1(v).0
        """
    )
    assert_close(m.vjp_vjp(P, V), m.hvp_fwd(P, V), 1e-12)


# --- Horner's rule as a recursive function ------------------------------------------------------

HORNER = """
fn horner(c, x, i) = if i == 5 { c[i] } else { c[i] + x * horner(c, x, i + 1) }
fn poly(c, x) = horner(c, x, 0)
fn d1(c, x) = grad(poly, 1)(c, x)
fn d2(c, x) = grad(d1, 1)(c, x)
fn d2_fwd(c, x) = jvp(fn(x) => d1(c, x), (x,), (1.0,)).1
fn d3(c, x) = grad(d2, 1)(c, x)
fn dc_dx(c, x) = grad(d1, 0)(c, x)
fn dc_dx_fwd(c, x) = jvp(fn(x) => grad(poly, 0)(c, x), (x,), (1.0,)).1
fn by_fold(c, x) = fold(fn(acc, k) => acc * x + c[5 - k], 0.0, arange(6))
fn dc_dx_fold(c, x) = grad(fn(c) => grad(by_fold, 1)(c, x))(c)
fn pb(c, x) = vjp(fn(x) => poly(c, x), x).1(1.0).0
fn pb_pb(c, x) = vjp(fn(x) => pb(c, x), x).1(1.0).0
"""

C = np.array([0.5, -1.0, 2.0, 0.25, -0.75, 1.5])


@pytest.mark.parametrize("x", [0.7, -1.3, 0.0])
def test_horner_differentiated_twice_and_three_times(x):
    m = mod(HORNER)
    poly = np.polynomial.Polynomial(C)
    assert m.d1(C, x) == pytest.approx(poly.deriv(1)(x), rel=1e-12, abs=1e-12)
    assert m.d2(C, x) == pytest.approx(poly.deriv(2)(x), rel=1e-12, abs=1e-12)
    assert m.d2_fwd(C, x) == pytest.approx(poly.deriv(2)(x), rel=1e-12, abs=1e-12)
    assert m.d3(C, x) == pytest.approx(poly.deriv(3)(x), rel=1e-12, abs=1e-12)
    assert m.pb_pb(C, x) == pytest.approx(poly.deriv(2)(x), rel=1e-12, abs=1e-12)


def test_horner_mixed_second_derivative_matches_fold_and_closed_form():
    """d/dc of p'(x): the coefficients are passed on unchanged down the recursion."""
    m = mod(HORNER)
    x = 0.7
    want = np.array([k * x ** (k - 1) if k else 0.0 for k in range(len(C))])
    assert_close(m.dc_dx(C, x), want, 1e-12)
    assert_close(m.dc_dx_fwd(C, x), want, 1e-12)
    assert_close(m.dc_dx_fold(C, x), want, 1e-12)


# --- a recursive tree sum ----------------------------------------------------------------------

TREE = """
fn tree() = {left: [1, 3, 5, -1, 7, -1, -1, -1, -1], right: [2, 4, 6, -1, 8, -1, -1, -1, -1],
             leaf: [0, 0, 0, 2, 0, 1, 3, 0, 4]}
fn enc(t, w, values, i) =
    if t.left[i] < 0 { tanh(w * values[t.leaf[i]]) }
    else { tanh(w * (enc(t, w, values, t.left[i]) + enc(t, w, values, t.right[i]))) }
fn loss(w, values) = enc(tree(), w, values, 0) ** 2
fn dv(w, values) = grad(loss, 1)(w, values)
fn hvp(w, values, u) = grad(fn(values) => sum(dv(w, values) * u), 0)(values)
fn hvp_fwd(w, values, u) = jvp(fn(values) => dv(w, values), (values,), (u,)).1
fn dw2(w, values) = grad(grad(loss, 0), 0)(w, values)
fn dw1(w, values) = grad(loss, 0)(w, values)
"""

VALUES = np.array([0.5, 1.5, -2.0, 3.0, 0.25])
U = np.array([0.3, -0.2, 0.9, 0.1, -0.5])


def test_tree_sum_second_order_matches_finite_differences():
    m = mod(TREE)
    w = 0.8
    want = directional(lambda v: m.dv(w, v), (VALUES,), (U,))[0]
    assert_close(m.hvp(w, VALUES, U), want, 1e-6, "grad of grad")
    assert_close(m.hvp_fwd(w, VALUES, U), want, 1e-6, "jvp of grad")
    (dw2,) = directional(lambda w: m.dw1(w, VALUES), (w,), (1.0,))
    assert m.dw2(w, VALUES) == pytest.approx(float(dw2), rel=1e-6)


# --- no tape is left behind --------------------------------------------------------------------

LEAK = """
fn w(x, n) = sum(while(fn(s) => s.1 < n, fn(s) => (sin(s.0) * x + 0.1, s.1 + 1), (ones([1000]) * 0.5, 0)).0)
fn d1(x, n) = grad(w)(x, n)
fn pw(x, v, n) = if n == 0 { sum(v) } else { pw(x, sin(v) * x, n - 1) }
fn r1(x, n) = grad(fn(x) => pw(x, ones([1000]), n))(x)
fn w_rev(x, n) = grad(d1)(x, n)
fn w_fwd(x, n) = jvp(fn(x) => d1(x, n), (x,), (1.0,)).1
fn r_rev(x, n) = grad(r1)(x, n)
fn r_fwd(x, n) = jvp(fn(x) => r1(x, n), (x,), (1.0,)).1
fn w_unused(x, n) = grad(fn(x) { print(w(x, n) > 1e300); x * x })(x)
fn r_unused(x, n) = grad(fn(x) { print(pw(x, ones([1000]), n) > 1e300); x * x })(x)
"""


@pytest.mark.parametrize("name", ["w_rev", "w_fwd", "r_rev", "r_fwd", "w_unused", "r_unused"])
def test_every_tape_is_freed(name, capfd):
    """Each call tapes 20 records of 8 KB at each order: 300 calls that leaked them would grow
    by about 50 MB. A tape is freed even when no cotangent comes back to the loop (its value
    is only printed; the first-order gradient inside a second-order one is unused)."""
    import resource

    f = getattr(mod(LEAK), name)
    f(0.7, 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(300):
        f(0.7, 20)
    capfd.readouterr()
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 10, f"{grown_mb:.0f} MB more after 300 calls"


def test_the_tapes_of_while_loops_inside_a_map_are_freed_when_a_later_step_fails(tmp_path):
    """Each element's `while` tapes its steps on the heap, and the map keeps the tapes for its
    backward pass; when a later element's index is out of range, no backward pass frees them:
    200 such calls leaked 1 GB. They are records of the call, freed when it fails (Note [Tape
    records] in prims/tape.py)."""
    import subprocess
    import sys

    script = tmp_path / "leak.py"
    script.write_text(
        textwrap.dedent("""
        import numpy as np, diffc
        m = diffc.compile('''
        fn step(x) = while(fn(s) => s.1 < 50, fn(s) => (s.0 * 1.01, s.1 + 1), (x, 0)).0
        fn f(xs, i) = sum(map(fn(x) => step(x) * xs[i64(x * f64(i))], xs))
        ''', "leak.dfl")
        g = diffc.grad(m.f)
        xs = np.ones(20000)
        xs[5000:] = 2.0
        g(xs, 1)
        def rss():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 // 2**20
        before, failed = rss(), 0
        for _ in range(100):
            try:
                g(xs, 15000)
            except diffc.BoundsError as e:
                failed += "leak.dfl:3:" in str(e)
        print(failed, rss() - before)
        """)
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    failed, grown_mb = map(int, r.stdout.split())
    assert failed == 100
    assert grown_mb < 50, f"RSS grew by {grown_mb} MB over 100 failed calls"

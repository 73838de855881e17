"""The shape of derivatives and their composition: gradients shaped like their arguments,
argnums and value_and_grad, pullbacks, higher orders, nested differentiation (perturbation
confusion, meta-gradients), and the conventions at ties and edges (dfl-sketch.md, "Derivatives
at ties and edges"). Expected values are analytic, worked out by hand or with NumPy."""

from __future__ import annotations

import functools
import textwrap

import numpy as np
import pytest

import diffc

from .fd import assert_close, directional, leaves, numerical_grad, structure


@functools.cache
def mod(src: str) -> diffc.Module:
    return diffc.compile(textwrap.dedent(src), "structure.dfl")


def close(got, want, rtol=1e-12):
    assert_close(got, np.asarray(want, np.float64) if isinstance(want, list) else want, rtol)


X = np.array([0.3, -1.2, 0.7])
M = np.array([[0.5, -0.2, 0.1], [0.3, 0.8, -0.6]])

# --- structure ----------------------------------------------------------------------------------

NESTED = """
fn loss(p, x) = sum(tanh(p.layer.w @ x + p.layer.b)) * p.scale.0 + sum(p.scale.1 * x)
fn dfl_grad(p, x) = grad(loss)(p, x)
"""


def nested_params():
    return {"layer": {"w": M.copy(), "b": np.array([0.1, -0.1])}, "scale": (1.5, np.array([1.0, 2.0, 3.0]))}


def test_gradient_has_the_structure_of_nested_records_and_tuples():
    m = mod(NESTED)
    p = nested_params()
    for g in (diffc.grad(m.loss)(p, X), m.dfl_grad(p, X)):
        assert structure(g) == structure(p)
        h = np.tanh(M @ X + p["layer"]["b"])
        close(g["layer"]["w"], 1.5 * np.outer(1 - h**2, X))
        close(g["layer"]["b"], 1.5 * (1 - h**2))
        close(g["scale"][0], np.sum(h))
        close(g["scale"][1], X)


def test_gradient_of_nested_records_matches_finite_differences():
    m = mod(NESTED)
    p = nested_params()
    g = diffc.grad(m.loss)(p, X)
    assert_close(leaves(g), numerical_grad(m.loss, (p, X), (0,)), 1e-6)


TWO = """
fn f(a, n, b) = sum(a * b) * f64(n) + sum(b * b)
fn g_both(a, n, b) = grad(f, (0, 2))(a, n, b)
fn g_one(a, n, b) = grad(f, 2)(a, n, b)
fn g_single_tuple(a, n, b) = grad(f, (2,))(a, n, b)
fn vg(a, n, b) = value_and_grad(f, (2, 0))(a, n, b)
fn vg1(a, n, b) = value_and_grad(f)(a, n, b)
fn pullback(a, n, b) {
    let (y, pb) = vjp(fn(a, n, b) => a * b * f64(n), a, n, b);
    pb(ones([3]))
}
"""
A, B, NN = np.array([1.0, 2.0, 3.0]), np.array([0.5, -1.0, 2.0]), 2


def test_grad_with_tuple_argnums_returns_a_tuple():
    m = mod(TWO)
    want_a, want_b = NN * B, NN * A + 2 * B
    for g in (diffc.grad(m.f, (0, 2))(A, NN, B), m.g_both(A, NN, B)):
        assert isinstance(g, tuple) and len(g) == 2
        close(g[0], want_a)
        close(g[1], want_b)
    for g in (diffc.grad(m.f, (2,))(A, NN, B), m.g_single_tuple(A, NN, B)):
        assert isinstance(g, tuple) and len(g) == 1
        close(g[0], want_b)
    for g in (diffc.grad(m.f, 2)(A, NN, B), m.g_one(A, NN, B)):
        assert isinstance(g, np.ndarray)
        close(g, want_b)


def test_value_and_grad_returns_the_value_and_the_gradients():
    m = mod(TWO)
    value = m.f(A, NN, B)
    for v, (gb, ga) in (diffc.value_and_grad(m.f, (2, 0))(A, NN, B), m.vg(A, NN, B)):
        assert v == value
        close(gb, NN * A + 2 * B)
        close(ga, NN * B)
    for v, g in (diffc.value_and_grad(m.f)(A, NN, B), m.vg1(A, NN, B)):
        assert v == value
        close(g, NN * B)


def test_the_pullback_returns_one_cotangent_per_input():
    m = mod(TWO)
    for cts in (m.pullback(A, NN, B), diffc.vjp(m.f)(A, NN, B, 1.0)):
        assert isinstance(cts, tuple) and len(cts) == 3
        assert np.asarray(cts[1]).dtype.kind == "i" and cts[1] == 0  # an integer input: a zero
    ga, _, gb = m.pullback(A, NN, B)
    close(ga, NN * B)
    close(gb, NN * A)


def test_jvp_and_vjp_of_a_function_with_a_record_result():
    m = mod("fn f(x) = {sq: x * x, pair: (sum(x), sin(x))}")
    y, dy = diffc.jvp(m.f)(X, np.ones(3))
    assert structure(dy) == structure(y)
    close(dy["sq"], 2 * X)
    close(dy["pair"][0], 3.0)
    close(dy["pair"][1], np.cos(X))
    (ct,) = diffc.vjp(m.f)(X, {"sq": np.ones(3), "pair": (2.0, np.ones(3))})
    close(ct, 2 * X + 2.0 + np.cos(X))


def test_integer_results_have_zero_tangents_and_take_a_cotangent_slot():
    m = mod("""
        fn f(x) = (x * 2.0, 3, argmax(x))
        fn pulled(x) { let (y, pb) = vjp(f, x); pb((ones([3]), 0, 0)) }
    """)
    x = np.array([1.0, 2.0, 0.5])
    (y, n, k), (dy, dn, dk) = diffc.jvp(m.f)(x, np.ones(3))
    assert (n, k, dn, dk) == (3, 1, 0, 0)
    close(dy, [2.0, 2.0, 2.0])
    for cts in (diffc.vjp(m.f)(x, (np.ones(3), 0, 0)), m.pulled(x)):
        assert len(cts) == 1
        close(cts[0], [2.0, 2.0, 2.0])


def test_unused_arguments_get_zero_gradients_of_their_type():
    m = mod("fn f(x, y, s) = sum(y * y)")
    gx, gy, gs = diffc.grad(m.f, (0, 1, 2))(X, X, 2.0)
    assert isinstance(gs, float) and gs == 0.0
    assert gx.shape == (3,) and not np.any(gx)
    close(gy, 2 * X)


# --- higher order ---------------------------------------------------------------------------------

HIGHER = """
fn f(x) = sin(x) * x ** 3
fn d1(x) = grad(f)(x)
fn d2(x) = grad(grad(f))(x)
fn d3(x) = grad(grad(grad(f)))(x)
fn q(x, a) = 0.5 * (x @ (a @ x)) + sum(exp(x) * x)
fn hvp_fwd_rev(x, a, v) = jvp(fn(x) => grad(q)(x, a), (x,), (v,)).1
fn hvp_rev_rev(x, a, v) = grad(fn(x) => grad(q)(x, a) @ v)(x)
"""


@pytest.mark.parametrize("x", [0.7, -1.3, 2.0])
def test_third_order_gradient_matches_the_analytic_derivative(x):
    m = mod(HIGHER)
    s, c = np.sin(x), np.cos(x)
    close(m.d1(x), c * x**3 + 3 * s * x**2, 1e-12)
    close(m.d2(x), -s * x**3 + 6 * c * x**2 + 6 * s * x, 1e-12)
    close(m.d3(x), -c * x**3 - 9 * s * x**2 + 18 * c * x + 6 * s, 1e-12)


def test_hessian_vector_product_forward_over_reverse_equals_reverse_over_reverse():
    m = mod(HIGHER)
    a = np.array([[2.0, 0.5, 0.0], [0.1, 1.0, -0.3], [0.0, 0.4, 3.0]])
    v = np.array([1.0, -2.0, 0.5])
    want = 0.5 * (a + a.T) @ v + (2 * np.exp(X) + X * np.exp(X)) * v
    fwd_rev = m.hvp_fwd_rev(X, a, v)
    close(fwd_rev, want)
    close(m.hvp_rev_rev(X, a, v), fwd_rev)
    # and through the Python API: jvp of the compiled gradient
    _, dg = diffc.jvp(m.d1)(0.7, 1.0)
    close(dg, m.d2(0.7))


META = """
fn inner(w, x) = sum((w * x - 1.0) ** 2)
fn step(lr, w, x) = w - lr * grad(inner)(w, x)
fn outer(lr, w, x) = inner(step(lr, w, x), x)
fn meta(lr, w, x) = grad(outer)(lr, w, x)
"""


def test_meta_gradient_through_an_inner_gradient_step():
    m = mod(META)
    lr, w, x = 0.05, np.array([0.2, -0.4, 1.0]), np.array([1.0, 2.0, -0.5])
    g = 2 * x * (w * x - 1)
    w2 = w - lr * g
    want = np.sum(2 * x * (w2 * x - 1) * -g)
    close(m.meta(lr, w, x), want)
    close(diffc.grad(m.outer)(lr, w, x), want)
    # and the gradient w.r.t. the initial weights, through the inner step
    (want_w,) = numerical_grad(m.outer, (lr, w, x), (1,))
    assert_close(diffc.grad(m.outer, 1)(lr, w, x), want_w, 1e-6)


VJP_MAP = """
fn derivs(xs) = map(fn(x) {
    let (y, pb) = vjp(fn(z) => sin(z) * z, x);
    pb(1.0).0
}, xs)
fn total(xs) = sum(derivs(xs))
"""


def test_vjp_inside_map():
    m = mod(VJP_MAP)
    close(m.derivs(X), np.cos(X) * X + np.sin(X))
    close(diffc.grad(m.total)(X), -np.sin(X) * X + 2 * np.cos(X))


def test_perturbation_confusion():
    m = mod("""
        fn confusion(a) = grad(fn(a) => a * grad(fn(y) => a + y)(1.0))(a)
        fn nested(x) = grad(fn(x) => x * grad(fn(y) => x * y)(3.0))(x)
        fn f(a) = a * grad(fn(y) => a + y)(1.0)
    """)
    assert m.confusion(2.0) == 1.0
    assert m.nested(2.0) == 4.0  # d/dx (x * x)
    assert diffc.grad(m.f)(2.0) == 1.0


def test_weight_tying_a_captured_weight_gets_the_sum_over_its_uses():
    m = mod("""
        fn f(w, xs) {
            let scale = fn(x) => w * x;
            sum(map(scale, xs)) + fold(fn(h, x) => h + scale(x), 0.0, xs) + scale(xs[0])
        }
    """)
    assert m.f(2.0, X) == pytest.approx(2 * 2.0 * X.sum() + 2.0 * X[0])
    close(diffc.grad(m.f)(2.0, X), 2 * X.sum() + X[0])


def test_stop_gradient_custom_vjp_and_checkpoint():
    m = mod("""
        fn sg(x) = x * stop_gradient(x)
        fn tripled(x) = custom_vjp(fn(x) => x, fn(x) => (x, 0.0), fn(r, ct) => (3.0 * ct,))(x)
        fn plain(a, x) = sum(sin(fold(fn(h, r) => tanh(a @ h + r), x, [x, x * x, x, sin(x)])))
        fn ckpt(a, x) = sum(sin(fold(fn(h, r) => tanh(a @ h + r), x, [x, x * x, x, sin(x)], checkpoint=3)))
        fn ckpt_fn(a, x) = checkpoint(fn(x) => plain(a, x))(x)
    """)
    assert diffc.grad(m.sg)(3.0) == 3.0
    assert diffc.grad(m.tripled)(1.5) == 3.0
    a = np.array([[0.5, -0.3, 0.2], [0.1, 0.4, 0.0], [-0.2, 0.3, 0.6]])
    want = diffc.grad(m.plain, (0, 1))(a, X)
    for fn in (m.ckpt, m.ckpt_fn):
        got = diffc.grad(fn, (0, 1))(a, X)
        close(got[0], want[0])
        close(got[1], want[1])


# --- ties and edges -------------------------------------------------------------------------------

EDGES = """
fn mx(x) = max(x)
fn mn(x) = min(x)
fn mx_axis(x) = sum(max(x, axis=1) * [1.0, 10.0])
fn mn_axis(x) = sum(min(x, axis=0) * [1.0, 10.0, 100.0])
fn maxi(x, y) = sum(maximum(x, y))
fn mini(x, y) = sum(minimum(x, y))
fn relu_(x) = relu(x)
fn abs_(x) = abs(x)
fn pw(x, y) = x ** y
fn pw_int(x) = x ** 0
fn where_sqrt(x) = where(x > 0.0, sqrt(x), 0.0)
fn where_log(x) = where(x > 0.0, log(x), x)
fn where_div(x) = where(x != 0.0, 1.0 / x, 0.0)
fn where_pow(x) = where(x > 0.0, x ** 0.5, 0.0)
fn where_log1p(x) = where(x > -1.0, log1p(x), 0.0)
fn vec_where_sqrt(x) = sum(where(x > 0.0, sqrt(x), 0.0))
"""


def test_max_and_min_send_the_cotangent_to_the_first_tie():
    m = mod(EDGES)
    x = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    close(diffc.grad(m.mx)(x), [0, 1, 0, 0, 0])
    close(diffc.grad(m.mn)(np.array([2.0, 1.0, 5.0, 1.0])), [0, 1, 0, 0])
    _, dy = diffc.jvp(m.mx)(x, np.array([0.0, 1.0, 10.0, 0.0, 100.0]))
    assert dy == 1.0
    close(diffc.grad(m.mx_axis)(np.array([[1.0, 2.0, 2.0], [5.0, 5.0, 5.0]])), [[0, 1, 0], [10, 0, 0]])
    close(diffc.grad(m.mn_axis)(np.array([[1.0, 2.0, 4.0], [1.0, 0.0, 4.0]])), [[1, 0, 100], [0, 10, 0]])


def test_maximum_and_minimum_send_the_cotangent_to_the_first_operand_at_a_tie():
    m = mod(EDGES)
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 5.0, 0.0])
    for fn, other in ((m.maxi, [0, 1, 0]), (m.mini, [0, 0, 1])):
        gx, gy = diffc.grad(fn, (0, 1))(x, y)
        close(gx, 1 - np.array(other))
        close(gy, other)
        _, dy = diffc.jvp(fn)(x, y, np.array([1.0, 0, 0]), np.array([10.0, 0, 0]))
        assert dy == 1.0


def test_relu_has_derivative_zero_at_zero():
    m = mod(EDGES)
    assert diffc.grad(m.relu_)(0.0) == 0.0
    assert diffc.jvp(m.relu_)(0.0, 1.0) == (0.0, 0.0)


def test_relu_derivative_away_from_zero():
    m = mod(EDGES)
    assert diffc.grad(m.relu_)(0.5) == 1.0
    assert diffc.grad(m.relu_)(-0.5) == 0.0


def test_abs_has_derivative_zero_at_zero():
    m = mod(EDGES)
    assert diffc.grad(m.abs_)(0.0) == 0.0
    assert diffc.jvp(m.abs_)(0.0, 1.0) == (0.0, 0.0)
    assert diffc.grad(m.abs_)(-2.0) == -1.0


@pytest.mark.parametrize(
    "y, want",
    [
        (0.0, (0.0, 0.0)),  # d/dx: 0 * 0 ** -1 would be NaN; d/dy: 1 * log(0) would be -inf
        (2.0, (0.0, 0.0)),
        (1.0, (1.0, 0.0)),
        (3.5, (0.0, 0.0)),
    ],
)
def test_power_at_zero_base(y, want):
    m = mod(EDGES)
    assert diffc.grad(m.pw, (0, 1))(0.0, y) == want
    assert diffc.jvp(m.pw)(0.0, y, 1.0, 0.0)[1] == want[0]
    assert diffc.jvp(m.pw)(0.0, y, 0.0, 1.0)[1] == want[1]
    assert diffc.grad(m.pw_int)(0.0) == 0.0


@pytest.mark.parametrize("y", [-1.0, 0.5])
def test_power_at_zero_base_has_zero_derivative_in_the_exponent(y):
    m = mod(EDGES)
    gx, gy = diffc.grad(m.pw, (0, 1))(0.0, y)
    assert gy == 0.0
    assert np.isinf(gx)  # the true derivative in x: y * 0 ** (y - 1)


@pytest.mark.parametrize(
    "fn, x, want",
    [
        ("where_sqrt", -1.0, 0.0),
        ("where_sqrt", 0.0, 0.0),
        ("where_sqrt", 4.0, 0.25),
        ("where_log", -1.0, 1.0),
        ("where_log", 0.0, 1.0),
        ("where_log", 2.0, 0.5),
        ("where_div", 0.0, 0.0),
        ("where_pow", 0.0, 0.0),
        ("where_pow", -1.0, 0.0),
        ("where_log1p", -2.0, 0.0),
    ],
)
def test_where_with_inf_or_nan_in_the_branch_not_taken_has_a_finite_gradient(fn, x, want):
    m = mod(EDGES)
    f = m.function(fn)
    assert diffc.grad(f)(x) == want
    assert diffc.jvp(f)(x, 1.0)[1] == want
    assert diffc.vjp(f)(x, 1.0) == (want,)


def test_where_not_taken_branch_stays_finite_at_second_order_and_on_arrays():
    m = mod(
        EDGES
        + """
        fn d2_sqrt(x) = grad(grad(where_sqrt))(x)
        fn d2_log(x) = grad(grad(where_log))(x)
    """
    )
    assert m.d2_sqrt(-1.0) == 0.0
    assert m.d2_log(-1.0) == 0.0
    assert m.d2_log(2.0) == -0.25
    close(diffc.grad(m.vec_where_sqrt)(np.array([-1.0, 0.0, 4.0])), [0.0, 0.0, 0.25])


# --- known bugs: minimal reproducers ------------------------------------------------------------


def test_mod_derivative_in_the_dividend():
    m = mod("fn f(x) = x % 3.0")
    assert diffc.grad(m.f)(1.5) == 1.0


def test_mod_derivative_in_the_divisor():
    m = mod("fn f(y) = 7.5 % y")
    assert diffc.grad(m.f)(2.0) == -3.0  # 7.5 % y == 7.5 - 3 y near y = 2


SECOND_ORDER = """
fn pw(x, n) = if n == 0 { x } else { pw(x, n - 1) * x }
fn d1(x, n) = grad(pw)(x, n)
fn d2(x, n) = grad(d1)(x, n)
fn d1_fwd(x, n) = jvp(fn(x) => pw(x, n), (x,), (1.0,)).1
fn rev_over_fwd(x, n) = grad(d1_fwd)(x, n)
fn fwd_over_fwd(x, n) = jvp(fn(x) => d1_fwd(x, n), (x,), (1.0,)).1
fn w(x) = while(fn(s) => s < 10.0, fn(s) => s * x, 1.0)
fn wd1(x) = grad(w)(x)
fn wd2(x) = grad(wd1)(x)
fn wd1_fwd(x) = jvp(w, (x,), (1.0,)).1
fn w_rev_over_fwd(x) = grad(wd1_fwd)(x)
fn w_fwd_over_fwd(x) = jvp(wd1_fwd, (x,), (1.0,)).1
"""
# pw(x, 2) == x ** 3 at x = 2: 8, 12, 12; w(1.5) == 1.5 ** 6 (six steps pass 10)
PW = (2.0, 2)
W_D1, W_D2 = 6 * 1.5**5, 30 * 1.5**4


def test_second_derivative_through_recursion_and_while_with_forward_mode_inside():
    m = mod(SECOND_ORDER)
    assert diffc.grad(m.pw)(*PW) == 12.0
    assert diffc.jvp(m.pw)(*PW, 1.0, 0) == (8.0, 12.0)
    assert m.rev_over_fwd(*PW) == 12.0
    assert m.fwd_over_fwd(*PW) == 12.0
    assert diffc.grad(m.w)(1.5) == pytest.approx(W_D1)
    assert m.w_rev_over_fwd(1.5) == pytest.approx(W_D2)
    assert m.w_fwd_over_fwd(1.5) == pytest.approx(W_D2)


def test_second_derivative_through_recursion():
    """The reverse of a recursion is differentiated as a tape-free reverse (ad/via.py)."""
    m = mod(SECOND_ORDER + "fn d3(x, n) = grad(d2)(x, n)")
    assert m.d2(*PW) == 12.0
    assert diffc.jvp(m.d1)(*PW, 1.0, 0)[1] == 12.0
    assert m.d3(*PW) == 6.0


def test_second_derivative_through_while():
    """The tape ops of a while are differentiated as loops that recompute (ad/via.py)."""
    m = mod(SECOND_ORDER + "fn wd3(x) = grad(wd2)(x)")
    assert m.wd2(1.5) == pytest.approx(W_D2)
    assert diffc.jvp(m.wd1)(1.5, 1.0)[1] == pytest.approx(W_D2)
    assert m.wd3(1.5) == pytest.approx(120 * 1.5**3)


def test_first_derivative_through_while():
    m = mod("fn f(x) = while(fn(s) => s < 10.0, fn(s) => s * x, 1.0)")
    assert diffc.grad(m.f)(1.5) == pytest.approx(6 * 1.5**5)
    assert diffc.jvp(m.f)(1.5, 1.0)[1] == pytest.approx(6 * 1.5**5)
    assert_close(diffc.grad(m.f)(1.5), directional(m.f, (1.5,), (1.0,))[0], 1e-6)


def test_value_both_looped_over_and_captured_gets_both_contributions():
    """x is a loop's initial state (or the array mapped over) and a captured constant too:
    the cotangent threaded through the loop for the constant must not drop the other part."""
    import numpy as np

    import diffc

    m = diffc.compile(
        """
        fn w(x) = sum(while(fn(s) => s.1 < 3, fn(s) => (sin(s.0) * x + s.0, s.1 + 1), (x, 0)).0 ** 2)
        fn mp(x) = sum(map(fn(r) => r * sum(x), x))
        fn sc(x) = sum(scan(fn(c, r) => (c * x + r, c), x, x).1)
        """
    )
    x = np.array([0.3, -0.5, 0.8])
    for f in (m.w, m.mp, m.sc):
        g = diffc.grad(f)(x)
        num = np.array([(f(x + 1e-6 * e) - f(x - 1e-6 * e)) / 2e-6 for e in np.eye(3)])
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_per_example_gradients_through_a_loop_by_map():
    """A gradient inside a map: the inner backward loop's in-place accumulator is the map's
    row (a destination with an offset)."""
    m = mod("""
        fn loss(w, x) = sum(scan(fn(h, v) { let n = tanh(w @ h + v); (n, n) }, zeros([3]), x).1)
        fn per_example(w, xs) = map(fn(x) => grad(loss, 0)(w, x), xs)
    """)
    rng = np.random.default_rng(0)
    w, xs = rng.standard_normal((3, 3)) / 2, rng.standard_normal((4, 5, 3))
    want = np.stack([diffc.grad(m.loss, 0)(w, x) for x in xs])
    np.testing.assert_allclose(m.per_example(w, xs), want, rtol=1e-13)

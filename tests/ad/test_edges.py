"""Derivatives at the edges, where finite differences cannot be the oracle: kinks (abs, relu),
ties (max, min, maximum, minimum: the first selected operand or element gets the cotangent),
zeros (prod, pow), infinities and overflow in the branch of `where` or `if` not taken (a zero
cotangent or tangent times an infinite partial is 0, not NaN), and the standard library's nn
at 0, +-inf, large values and ties. Each row gives the exact gradient; grad, vjp and jvp (along
each unit vector) must all agree with it, and so must the second derivative where given."""

from __future__ import annotations

import numpy as np
import pytest

import diffc

INF = np.inf

SRC = """
import nn
fn xlogx(x) = where(x > 0.0, x * log(x), 0.0)
fn xlogx_if(x) = if x > 0.0 { x * log(x) } else { 0.0 }
fn softplus_where(z) = where(z > 20.0, z, log1p(exp(z)))
fn sqrt_where(x) = where(x > 0.0, sqrt(x), 0.0)
fn recip_where(x) = where(x != 0.0, 1.0 / x, 0.0)
fn pow_where(x) = where(x > 0.0, x ** 0.5, 0.0)
fn exp_where(x) = where(x < 100.0, exp(x), 0.0)
fn tanh_where(x) = where(x < 1.0, tanh(exp(x)), x)
fn abs0(x) = abs(x)
fn relu0(x) = relu(x)
fn square(x) = x ** 2
fn cube(x) = x ** 3
fn pow_zero(x) = x ** 0.0
fn pow_one(x) = x ** 1.0
fn pow_exponent(y, x) = x ** y
fn maximum2(x, y) = maximum(x, y)
fn minimum2(x, y) = minimum(x, y)
fn max_all(x) = max(x)
fn min_all(x) = min(x)
fn max_rows(m) = sum(max(m, axis=1) * [1.0, 2.0])
fn prod_all(x) = prod(x)
fn prod_cols(m) = sum(prod(m, axis=0) * [1.0, 2.0])
fn softplus(x) = nn.softplus(x)
fn bce(z, label) = nn.sigmoid_cross_entropy(z, label)
fn lse(x) = nn.logsumexp(x)
fn xent(x) = nn.cross_entropy(x, 1)
fn softmax0(x) = nn.softmax(x)[0]
fn log_softmax0(x) = nn.log_softmax(x)[0]
fn leaky(x) = nn.leaky_relu(x, 0.1)
fn mse(x) = nn.mse(x, [1.0, 2.0])
fn variance(x) = nn.variance(x)
fn standardise_sum(x) = sum(nn.standardise(x, 1e-5) * [1.0, 2.0])
fn layer_norm_sum(x) = sum(nn.layer_norm({g: [1.0, 2.0], b: [0.0, 0.0]}, x))
fn rnn_cell0(h) = nn.rnn_cell({wh: [[1.0, 0.0], [0.0, 1.0]], wx: [[1.0], [1.0]], b: [0.0, 0.0]}, h, [0.0])[0]
"""

S = 1 / (1 + np.exp(-2.0))  # sigmoid(2)

# (function, arguments, gradient w.r.t. the first argument, its second derivative or None)
ROWS = [
    ("xlogx", (0.0,), 0.0, 0.0),
    ("xlogx", (-1.0,), 0.0, 0.0),
    ("xlogx_if", (0.0,), 0.0, 0.0),
    ("softplus_where", (800.0,), 1.0, 0.0),
    ("softplus_where", (0.0,), 0.5, 0.25),
    ("sqrt_where", (-1.0,), 0.0, 0.0),
    ("sqrt_where", (0.0,), 0.0, 0.0),
    ("recip_where", (0.0,), 0.0, 0.0),
    ("pow_where", (0.0,), 0.0, 0.0),
    ("exp_where", (800.0,), 0.0, 0.0),
    ("tanh_where", (800.0,), 1.0, 0.0),  # second order: tanh's zero partial meets exp's inf
    ("abs0", (0.0,), 0.0, 0.0),
    ("relu0", (0.0,), 0.0, 0.0),
    ("square", (0.0,), 0.0, 2.0),
    ("cube", (0.0,), 0.0, 0.0),
    ("pow_zero", (0.0,), 0.0, None),
    ("pow_one", (0.0,), 1.0, None),
    ("pow_exponent", (2.0, 0.0), 0.0, None),
    ("pow_exponent", (0.0, 0.0), 0.0, None),
    ("maximum2", (1.0, 1.0), 1.0, None),
    ("maximum2", (1.0, 2.0), 0.0, None),
    ("minimum2", (1.0, 1.0), 1.0, None),
    ("max_all", (np.array([1.0, 3.0, 3.0]),), [0.0, 1.0, 0.0], None),
    ("min_all", (np.array([2.0, 1.0, 1.0]),), [0.0, 1.0, 0.0], None),
    ("max_rows", (np.array([[1.0, 1.0], [0.0, 2.0]]),), [[1.0, 0.0], [0.0, 2.0]], None),
    ("prod_all", (np.array([2.0, 0.0, 3.0]),), [0.0, 6.0, 0.0], None),
    ("prod_all", (np.array([0.0, 0.0, 3.0]),), [0.0, 0.0, 0.0], None),
    ("prod_all", (np.array([0.0, 0.0, 0.0]),), [0.0, 0.0, 0.0], None),
    ("prod_all", (np.array([2.0, 5.0, 3.0]),), [15.0, 6.0, 10.0], None),
    ("prod_cols", (np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 0.0]]),), [[8.0, 0.0], [0.0, 0.0], [0.0, 6.0]], None),
    ("prod_cols", (np.array([[0.0, 0.0], [0.0, 3.0]]),), [[0.0, 6.0], [0.0, 0.0]], None),
    ("softplus", (0.0,), 0.5, 0.25),
    ("softplus", (800.0,), 1.0, 0.0),
    ("softplus", (-800.0,), 0.0, 0.0),
    ("softplus", (INF,), 1.0, 0.0),
    ("softplus", (-INF,), 0.0, 0.0),
    ("softplus", (2.0,), S, S * (1 - S)),
    ("bce", (0.0, 1.0), -0.5, 0.25),
    ("bce", (0.0, 0.0), 0.5, 0.25),
    ("bce", (2.0, 1.0), S - 1.0, S * (1 - S)),
    ("bce", (-2.0, 0.0), 1 - S, S * (1 - S)),
    ("bce", (1000.0, 0.0), 1.0, 0.0),
    ("bce", (-1000.0, 1.0), -1.0, 0.0),
    ("lse", (np.array([-INF, -INF]),), [1.0, 0.0], None),
    ("lse", (np.array([1.0, INF]),), [0.0, 1.0], None),
    ("lse", (np.array([0.0, 0.0]),), [0.5, 0.5], None),
    ("lse", (np.array([1000.0, 1000.0]),), [0.5, 0.5], None),
    ("lse", (np.array([-INF, 0.0]),), [0.0, 1.0], None),
    ("xent", (np.array([-INF, 0.0]),), [0.0, 0.0], None),
    ("xent", (np.array([0.0, 0.0]),), [0.5, -0.5], None),
    ("softmax0", (np.array([1.0, INF]),), [0.0, 0.0], None),
    ("softmax0", (np.array([0.0, 0.0]),), [0.25, -0.25], None),
    ("log_softmax0", (np.array([0.0, 0.0]),), [0.5, -0.5], None),
    ("leaky", (0.0,), 0.1, 0.0),
    ("mse", (np.array([1.0, 2.0]),), [0.0, 0.0], None),
    ("variance", (np.array([3.0, 3.0]),), [0.0, 0.0], None),
    # a constant x: (w - mean(w)) / sqrt(eps), finite
    ("standardise_sum", (np.array([3.0, 3.0]),), [-0.5 / np.sqrt(1e-5), 0.5 / np.sqrt(1e-5)], None),
    ("layer_norm_sum", (np.array([3.0, 3.0]),), [-0.5 / np.sqrt(1e-5), 0.5 / np.sqrt(1e-5)], None),
    ("rnn_cell0", (np.array([0.0, 0.0]),), [1.0, 0.0], None),
    ("rnn_cell0", (np.array([800.0, 0.0]),), [0.0, 0.0], None),
]

VALUES = [
    ("lse", (np.array([-INF, -INF]),), -INF),
    ("lse", (np.array([1.0, INF]),), INF),
    ("lse", (np.array([-INF, INF]),), INF),
    ("lse", (np.array([1000.0, 1000.0]),), 1000.0 + np.log(2.0)),
    ("softplus", (800.0,), 800.0),
    ("softplus", (-800.0,), 0.0),
    ("softplus", (0.0,), np.log(2.0)),
    ("bce", (1000.0, 0.0), 1000.0),
    ("bce", (0.0, 1.0), np.log(2.0)),
    ("softmax0", (np.array([-INF, -INF]),), 0.5),
    ("softmax0", (np.array([1.0, INF]),), 0.0),
    ("softmax0", (np.array([1000.0, -1000.0]),), 1.0),
]


def _second_derivatives():
    """fn d2_NAME(p0, ...) = grad(grad(NAME))(p0, ...) for the rows that give one."""
    arity = {name: len(args) for name, args, _, want2 in ROWS if want2 is not None}
    ps = {name: ", ".join(f"p{k}" for k in range(n)) for name, n in arity.items()}
    return "".join(f"fn d2_{name}({ps[name]}) = grad(grad({name}))({ps[name]})\n" for name in arity)


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC + _second_derivatives())


def _unit_vectors(x):
    x = np.asarray(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[idx] = 1.0
        yield idx, (e if x.ndim else 0.0 + e[()])


@pytest.mark.parametrize("name, args, want, want2", ROWS, ids=[f"{r[0]}{r[1]}" for r in ROWS])
def test_derivative_at_edge(m, name, args, want, want2):
    f = getattr(m, name)
    got = diffc.grad(f)(*args)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    rest_zero = tuple(0.0 * np.asarray(a) for a in args[1:])
    (ct, *_) = diffc.vjp(f)(*args, 1.0)
    np.testing.assert_allclose(ct, want, rtol=1e-12, atol=1e-15)
    for idx, e in _unit_vectors(args[0]):
        _, t = diffc.jvp(f)(*args, e, *rest_zero)
        np.testing.assert_allclose(t, np.asarray(want)[idx], rtol=1e-12, atol=1e-15)
    if want2 is not None:
        np.testing.assert_allclose(getattr(m, f"d2_{name}")(*args), want2, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name, args, want", VALUES, ids=[f"{r[0]}{r[1]}" for r in VALUES])
def test_value_at_edge(m, name, args, want):
    np.testing.assert_allclose(getattr(m, name)(*args), want, rtol=1e-12)

"""The workloads in JAX, as a JAX user writes them: jit of the loss and of value_and_grad, in
float64. Loops are lax.scan / lax.fori_loop; while_newton is a fori_loop of NEWTON_MAX_ITERS
masked trips, since JAX cannot reverse-differentiate lax.while_loop (WORKLOADS.md)."""

from __future__ import annotations

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    from jax import lax

    jax.config.update("jax_enable_x64", True)
    IMPORT_ERROR = ""
except ImportError as e:  # reported as skipped
    IMPORT_ERROR = f"jax is not installed ({e}); pip install -e '.[bench]'"

ODE_DT, ODE_STEPS = 0.01, 1000
NEWTON_TOL, NEWTON_MAX_ITERS = 1e-12, 100


def available():
    """Also initialises the CPU backend (a tiny jit), which would otherwise count in the first
    workload's compile time."""
    if IMPORT_ERROR:
        return False, IMPORT_ERROR
    jax.jit(lambda x: x + 1.0)(1.0).block_until_ready()
    return True, ""


def xent(z, y):
    lse = jax.nn.logsumexp(z, axis=1)
    return jnp.mean(lse - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0])


def mlp_step(W1, b1, W2, b2, X, y):
    return xent(jnp.tanh(X @ W1 + b1) @ W2 + b2, y)


def rnn_scan(Wx, Wh, b, xs, h0):
    def cell(h, x):
        return jnp.tanh(x @ Wx + h @ Wh + b), None

    h, _ = lax.scan(cell, h0, xs)
    return jnp.sum(h * h)


def lstm_scan(W, U, b, xs, h0, c0):
    def cell(state, x):
        h, c = state
        g = x @ W + h @ U + b
        i, f, u, o = jax.nn.sigmoid(g[0:32]), jax.nn.sigmoid(g[32:64]), jnp.tanh(g[64:96]), jax.nn.sigmoid(g[96:128])
        c = f * c + i * u
        return (o * jnp.tanh(c), c), None

    (h, _), _ = lax.scan(cell, (h0, c0), xs)
    return jnp.sum(h * h)


def softmax_xent(Z, y):
    return xent(Z, y)


def ode_rk4(p, s0):
    k, c, F = p[0], p[1], p[2]
    h = ODE_DT

    def f(th, om):
        return om, -k * jnp.sin(th) - c * om + F

    def step(_, s):
        th, om = s
        k1t, k1o = f(th, om)
        k2t, k2o = f(th + 0.5 * h * k1t, om + 0.5 * h * k1o)
        k3t, k3o = f(th + 0.5 * h * k2t, om + 0.5 * h * k2o)
        k4t, k4o = f(th + h * k3t, om + h * k3o)
        return (th + h / 6.0 * (k1t + 2.0 * k2t + 2.0 * k3t + k4t), om + h / 6.0 * (k1o + 2.0 * k2o + 2.0 * k3o + k4o))

    th, om = lax.fori_loop(0, ODE_STEPS, step, (s0[0], s0[1]))
    return th * th + om * om


def conv_small(K, bk, Wd, bd, X, y):
    o = lax.conv_general_dilated(X, K, (1, 1), "VALID") + bk[None, :, None, None]  # NCHW, OIHW
    r = jnp.maximum(o, 0.0)
    pooled = lax.reduce_window(r, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return xent(pooled.reshape(X.shape[0], -1) @ Wd + bd, y)


def attention(Wq, Wk, Wv, X):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    A = jax.nn.softmax((Q @ K.T) / jnp.sqrt(32.0), axis=1)
    O = A @ V
    return jnp.sum(O * O)


def while_newton(a):
    def trip(_, s):
        x, n, active = s
        active = active & (jnp.abs(x * x - a) >= NEWTON_TOL) & (n < NEWTON_MAX_ITERS)
        return jnp.where(active, 0.5 * (x + a / x), x), n + active, active

    x, _, _ = lax.fori_loop(0, NEWTON_MAX_ITERS, trip, (a, jnp.asarray(0), jnp.asarray(True)))
    return x


LOSSES = {
    "mlp_step": mlp_step,
    "rnn_scan": rnn_scan,
    "lstm_scan": lstm_scan,
    "softmax_xent": softmax_xent,
    "ode_rk4": ode_rk4,
    "conv_small": conv_small,
    "attention": attention,
    "while_newton": while_newton,
}


def make(name, params, inputs):
    if name not in LOSSES:
        return None
    return jitted(LOSSES[name], params, inputs)


def jitted(loss, params, inputs):
    """(fwd, value_and_grad) of a JAX loss, both jitted, its gradient w.r.t. the params."""
    fwd_jit = jax.jit(loss)
    vg_jit = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(params)))))
    args = [jnp.asarray(a) for a in [*params, *inputs]]

    def fwd():
        return float(fwd_jit(*args))

    def value_and_grad():
        value, grads = vg_jit(*args)
        return float(value), [np.asarray(g) for g in grads]

    return fwd, value_and_grad

"""The workloads in PyTorch, float64, as a PyTorch user writes them: eager, or with torch.compile
(compiled=True). fwd runs under torch.no_grad(); value_and_grad is torch.autograd.grad.

With torch.compile, the sequence workloads (rnn_scan, lstm_scan, ode_rk4, while_newton) compile
only the cell and keep the loop in Python, as users do: compiling a whole 200-step loop unrolls
it (40-80 s to compile, WORKLOADS.md). The others compile the whole loss."""

from __future__ import annotations

import functools
import math

import numpy as np

try:
    import torch
    import torch.nn.functional as tf

    IMPORT_ERROR = ""
except ImportError as e:  # reported as skipped
    IMPORT_ERROR = f"torch is not installed ({e}); pip install -e '.[bench]'"

ODE_DT, ODE_STEPS = 0.01, 1000
NEWTON_TOL, NEWTON_MAX_ITERS = 1e-12, 100


@functools.cache
def available(compiled=False):
    if IMPORT_ERROR:
        return False, IMPORT_ERROR
    if compiled:  # inductor generates C++ and needs a working compiler: try it once (and initialise)
        try:
            f = torch.compile(lambda x: torch.sin(x) * 2.0)
            f(torch.ones(3, dtype=torch.float64))
        except Exception as e:
            return False, f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return True, ""


# --- whole-loss workloads -----------------------------------------------------------------------


def mlp_step(W1, b1, W2, b2, X, y):
    return tf.cross_entropy(torch.tanh(X @ W1 + b1) @ W2 + b2, y)


def softmax_xent(Z, y):
    return tf.cross_entropy(Z, y)


def conv_small(K, bk, Wd, bd, X, y):
    pooled = tf.max_pool2d(torch.relu(tf.conv2d(X, K, bk)), 2)
    return tf.cross_entropy(pooled.flatten(1) @ Wd + bd, y)


def attention(Wq, Wk, Wv, X):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    O = torch.softmax((Q @ K.T) / math.sqrt(32.0), dim=1) @ V
    return torch.sum(O * O)


# --- sequence workloads: a cell, and a Python loop that calls it ------------------------------


def rnn_cell(x, h, Wx, Wh, b):
    return torch.tanh(x @ Wx + h @ Wh + b)


def lstm_cell(x, h, c, W, U, b):
    g = x @ W + h @ U + b
    i, f, u, o = torch.sigmoid(g[0:32]), torch.sigmoid(g[32:64]), torch.tanh(g[64:96]), torch.sigmoid(g[96:128])
    c = f * c + i * u
    return o * torch.tanh(c), c


def rk4_step(th, om, k, c, F):
    h = ODE_DT

    def f(th, om):
        return om, -k * torch.sin(th) - c * om + F

    k1t, k1o = f(th, om)
    k2t, k2o = f(th + 0.5 * h * k1t, om + 0.5 * h * k1o)
    k3t, k3o = f(th + 0.5 * h * k2t, om + 0.5 * h * k2o)
    k4t, k4o = f(th + h * k3t, om + h * k3o)
    return th + h / 6.0 * (k1t + 2.0 * k2t + 2.0 * k3t + k4t), om + h / 6.0 * (k1o + 2.0 * k2o + 2.0 * k3o + k4o)


def newton_step(x, a):
    return 0.5 * (x + a / x)


def sequence_losses(cell):
    """The sequence workloads' losses: Python loops calling their cells, each wrapped by `cell` (eager or compiled)."""
    rnn, lstm, rk4, newton = cell(rnn_cell), cell(lstm_cell), cell(rk4_step), cell(newton_step)

    def rnn_scan(Wx, Wh, b, xs, h0):
        h = h0
        for x in xs:
            h = rnn(x, h, Wx, Wh, b)
        return torch.sum(h * h)

    def lstm_scan(W, U, b, xs, h0, c0):
        h, c = h0, c0
        for x in xs:
            h, c = lstm(x, h, c, W, U, b)
        return torch.sum(h * h)

    def ode_rk4(p, s0):
        k, c, F = p[0], p[1], p[2]
        th, om = s0[0], s0[1]
        for _ in range(ODE_STEPS):
            th, om = rk4(th, om, k, c, F)
        return th * th + om * om

    def while_newton(a):
        x, n = a, 0
        while abs((x * x - a).item()) >= NEWTON_TOL and n < NEWTON_MAX_ITERS:
            x, n = newton(x, a), n + 1
        return x

    return {"rnn_scan": rnn_scan, "lstm_scan": lstm_scan, "ode_rk4": ode_rk4, "while_newton": while_newton}


WHOLE = {"mlp_step": mlp_step, "softmax_xent": softmax_xent, "conv_small": conv_small, "attention": attention}


def make(name, params, inputs, compiled=False):
    wrap = torch.compile if compiled else (lambda f: f)
    loss = wrap(WHOLE[name]) if name in WHOLE else sequence_losses(wrap).get(name)
    if loss is None:
        return None
    return calls(loss, params, inputs, torch.float64)


def calls(loss, params, inputs, dtype=None):
    """(fwd, value_and_grad) of a PyTorch loss, its gradient w.r.t. the params (as tensors of
    `dtype`, or of their own dtype); fwd runs under torch.no_grad()."""
    ps = [torch.tensor(np.asarray(p), dtype=dtype, requires_grad=True) for p in params]
    xs = [torch.from_numpy(np.asarray(x)) for x in inputs]

    def fwd():
        with torch.no_grad():
            return loss(*ps, *xs).item()

    def value_and_grad():
        value = loss(*ps, *xs)
        grads = torch.autograd.grad(value, ps)
        return value.item(), [g.numpy() if g.dim() else g.item() for g in grads]

    return fwd, value_and_grad

"""The workloads in NumPy with hand-written gradients: the reference every other implementation
is checked against. ode_rk4 and while_newton are loops on Python floats, as a NumPy user writes
scalar loops. See ../shared/bench/WORKLOADS.md for the definitions."""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ODE_DT, ODE_STEPS = 0.01, 1000
NEWTON_TOL, NEWTON_MAX_ITERS = 1e-12, 100


def available():
    return True, ""


# --- shared pieces ---------------------------------------------------------------------------


def xent_parts(z, y):
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    return float(np.mean(m[:, 0] + np.log(s[:, 0]) - z[rows, y])), e, s, rows


def xent_loss(z, y):
    """The mean softmax cross-entropy."""
    return xent_parts(z, y)[0]


def xent(z, y):
    """(L, dL/dz) of the mean softmax cross-entropy."""
    loss, e, s, rows = xent_parts(z, y)
    dz = e / s
    dz[rows, y] -= 1.0
    return loss, dz / len(y)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# --- 1. mlp_step ------------------------------------------------------------------------------


def mlp_step(W1, b1, W2, b2, X, y):
    h = np.tanh(X @ W1 + b1)
    loss, dz = xent(h @ W2 + b2, y)
    da = (dz @ W2.T) * (1.0 - h * h)
    return loss, [X.T @ da, da.sum(axis=0), h.T @ dz, dz.sum(axis=0)]


# --- 2. rnn_scan ------------------------------------------------------------------------------


def rnn_scan(Wx, Wh, b, xs, h0):
    hs = [h0]  # hs[t] is the state entering step t
    for x in xs:
        hs.append(np.tanh(x @ Wx + hs[-1] @ Wh + b))
    h = hs[-1]
    loss = float(np.sum(h * h))
    dh = 2.0 * h
    da = np.empty((len(xs), len(b)))
    for t in range(len(xs) - 1, -1, -1):
        da[t] = dh * (1.0 - hs[t + 1] ** 2)
        dh = da[t] @ Wh.T
    return loss, [xs.T @ da, np.array(hs[:-1]).T @ da, da.sum(axis=0)]


def rnn_scan_fwd(Wx, Wh, b, xs, h0):
    h = h0
    for x in xs:
        h = np.tanh(x @ Wx + h @ Wh + b)
    return float(np.sum(h * h))


# --- 3. lstm_scan -----------------------------------------------------------------------------


def lstm_cell(W, U, b, x, h, c):
    g = x @ W + h @ U + b
    i, f, u, o = sigmoid(g[0:32]), sigmoid(g[32:64]), np.tanh(g[64:96]), sigmoid(g[96:128])
    c2 = f * c + i * u
    tc = np.tanh(c2)
    return o * tc, c2, (h, c, i, f, u, o, tc)


def lstm_scan(W, U, b, xs, h0, c0):
    h, c, saved = h0, c0, []
    for x in xs:
        h, c, s = lstm_cell(W, U, b, x, h, c)
        saved.append(s)
    loss = float(np.sum(h * h))
    dh, dc = 2.0 * h, np.zeros_like(c)
    dg = np.empty((len(xs), len(b)))
    for t in range(len(xs) - 1, -1, -1):
        h_in, c_in, i, f, u, o, tc = saved[t]
        do = dh * tc
        dc = dc + dh * o * (1.0 - tc * tc)
        di, df, du = dc * u, dc * c_in, dc * i
        dc = dc * f
        dg[t] = np.concatenate([di * i * (1.0 - i), df * f * (1.0 - f), du * (1.0 - u * u), do * o * (1.0 - o)])
        dh = dg[t] @ U.T
    hs_in = np.array([s[0] for s in saved])
    return loss, [xs.T @ dg, hs_in.T @ dg, dg.sum(axis=0)]


def lstm_scan_fwd(W, U, b, xs, h0, c0):
    h, c = h0, c0
    for x in xs:
        h, c, _ = lstm_cell(W, U, b, x, h, c)
    return float(np.sum(h * h))


# --- 4. softmax_xent --------------------------------------------------------------------------


def softmax_xent(Z, y):
    loss, dZ = xent(Z, y)
    return loss, [dZ]


# --- 5. ode_rk4 (Python floats) ---------------------------------------------------------------


def rk4_stages(th, om, k, c, F, h):
    """The points at which RK4 evaluates f: (th_j, om_j) for j = 1..4, and the new state."""
    k1t, k1o = om, -k * math.sin(th) - c * om + F
    th2, om2 = th + 0.5 * h * k1t, om + 0.5 * h * k1o
    k2t, k2o = om2, -k * math.sin(th2) - c * om2 + F
    th3, om3 = th + 0.5 * h * k2t, om + 0.5 * h * k2o
    k3t, k3o = om3, -k * math.sin(th3) - c * om3 + F
    th4, om4 = th + h * k3t, om + h * k3o
    k4t, k4o = om4, -k * math.sin(th4) - c * om4 + F
    new = (th + h / 6.0 * (k1t + 2.0 * k2t + 2.0 * k3t + k4t), om + h / 6.0 * (k1o + 2.0 * k2o + 2.0 * k3o + k4o))
    return ((th, om), (th2, om2), (th3, om3), (th4, om4)), new


def ode_rk4_fwd(p, s0):
    k, c, F = (float(v) for v in p)
    th, om = float(s0[0]), float(s0[1])
    for _ in range(ODE_STEPS):
        _, (th, om) = rk4_stages(th, om, k, c, F, ODE_DT)
    return th * th + om * om


def ode_rk4(p, s0):
    k, c, F = (float(v) for v in p)
    h = ODE_DT
    states = [(float(s0[0]), float(s0[1]))]
    for _ in range(ODE_STEPS):
        states.append(rk4_stages(*states[-1], k, c, F, h)[1])
    th, om = states[-1]
    loss = th * th + om * om
    tb, ob = 2.0 * th, 2.0 * om  # adjoints of the state
    kb = cb = Fb = 0.0
    for step in range(ODE_STEPS - 1, -1, -1):
        stages, _ = rk4_stages(*states[step], k, c, F, h)
        # the weights of k_j in the update, then back through each stage from the last
        ktb = [h / 6.0 * tb, h / 3.0 * tb, h / 3.0 * tb, h / 6.0 * tb]
        kob = [h / 6.0 * ob, h / 3.0 * ob, h / 3.0 * ob, h / 6.0 * ob]
        step_of = [None, 0.5 * h, 0.5 * h, h]  # stage j's point is the state + step_of[j] * k_{j-1}
        for j in range(3, -1, -1):
            thj, omj = stages[j]
            kb -= math.sin(thj) * kob[j]
            cb -= omj * kob[j]
            Fb += kob[j]
            thjb = -k * math.cos(thj) * kob[j]
            omjb = -c * kob[j] + ktb[j]
            tb, ob = tb + thjb, ob + omjb
            if j > 0:
                ktb[j - 1] += step_of[j] * thjb
                kob[j - 1] += step_of[j] * omjb
    return loss, [np.array([kb, cb, Fb])]


# --- 6. conv_small ----------------------------------------------------------------------------


def conv_small(K, bk, Wd, bd, X, y, with_grad=True):
    n, nf = X.shape[0], K.shape[0]
    patches = sliding_window_view(X[:, 0], (3, 3), axis=(1, 2)).reshape(n * 36, 9)  # rows (n, i, j)
    o = (patches @ K.reshape(nf, 9).T + bk).reshape(n, 6, 6, nf).transpose(0, 3, 1, 2)
    r = np.maximum(o, 0.0)
    windows = r.reshape(n, nf, 3, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, nf, 3, 3, 4)
    arg = windows.argmax(axis=-1)[..., None]
    flat = np.take_along_axis(windows, arg, axis=-1).reshape(n, nf * 9)
    if not with_grad:
        return xent_loss(flat @ Wd + bd, y)
    loss, dz = xent(flat @ Wd + bd, y)
    dwin = np.zeros_like(windows)
    np.put_along_axis(dwin, arg, (dz @ Wd.T).reshape(n, nf, 3, 3, 1), axis=-1)
    dr = dwin.reshape(n, nf, 3, 3, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, nf, 6, 6)
    do = np.where(o > 0.0, dr, 0.0)
    do_rows = do.transpose(0, 2, 3, 1).reshape(n * 36, nf)
    return loss, [(do_rows.T @ patches).reshape(K.shape), do.sum(axis=(0, 2, 3)), flat.T @ dz, dz.sum(axis=0)]


# --- 7. attention -----------------------------------------------------------------------------


def attention(Wq, Wk, Wv, X, with_grad=True):
    scale = 1.0 / math.sqrt(32.0)
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    S = (Q @ K.T) * scale
    E = np.exp(S - S.max(axis=1, keepdims=True))
    A = E / E.sum(axis=1, keepdims=True)
    O = A @ V
    loss = float(np.sum(O * O))
    if not with_grad:
        return loss
    dO = 2.0 * O
    dA = dO @ V.T
    dS = A * (dA - np.sum(dA * A, axis=1, keepdims=True)) * scale
    return loss, [X.T @ (dS @ K), X.T @ (dS.T @ Q), X.T @ (A.T @ dO)]


# --- 8. while_newton (Python floats) ----------------------------------------------------------


def newton_steps(a):
    xs, x = [], a
    while abs(x * x - a) >= NEWTON_TOL and len(xs) < NEWTON_MAX_ITERS:
        xs.append(x)
        x = 0.5 * (x + a / x)
    return x, xs


def while_newton(a):
    a = float(a)
    x, xs = newton_steps(a)
    xbar, abar = 1.0, 0.0
    for xk in reversed(xs):
        abar += xbar * 0.5 / xk
        xbar *= 0.5 * (1.0 - a / (xk * xk))
    return x, [abar + xbar]


# --- the interface ----------------------------------------------------------------------------

VALUE_AND_GRAD = {
    "mlp_step": mlp_step,
    "rnn_scan": rnn_scan,
    "lstm_scan": lstm_scan,
    "softmax_xent": softmax_xent,
    "ode_rk4": ode_rk4,
    "conv_small": conv_small,
    "attention": attention,
    "while_newton": while_newton,
}

FORWARD = {
    "mlp_step": lambda W1, b1, W2, b2, X, y: xent_loss(np.tanh(X @ W1 + b1) @ W2 + b2, y),
    "rnn_scan": rnn_scan_fwd,
    "lstm_scan": lstm_scan_fwd,
    "softmax_xent": xent_loss,
    "ode_rk4": ode_rk4_fwd,
    "conv_small": lambda *args: conv_small(*args, with_grad=False),
    "attention": lambda *args: attention(*args, with_grad=False),
    "while_newton": lambda a: newton_steps(float(a))[0],
}


def make(name, params, inputs):
    if name not in VALUE_AND_GRAD:
        return None
    args = [*params, *inputs]
    fwd, vg = FORWARD[name], VALUE_AND_GRAD[name]
    return (lambda: fwd(*args)), (lambda: vg(*args))

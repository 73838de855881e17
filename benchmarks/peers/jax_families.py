"""The benchmark families (benchmarks/families.py) in JAX: jit of the loss and of
value_and_grad, loops as lax.scan. Written for when JAX is importable; not run on a machine
without it (the runner reports it as missing)."""

from __future__ import annotations

import functools

from .jax_peer import jitted

try:
    import jax
    import jax.numpy as jnp
    from jax import lax

    jax.config.update("jax_enable_x64", True)
    IMPORT_ERROR = ""
except ImportError as e:  # reported as a missing peer
    IMPORT_ERROR = f"jax is not installed ({e})"


@functools.cache
def available():
    if IMPORT_ERROR:
        return False, IMPORT_ERROR
    jax.jit(lambda x: x + 1.0)(1.0).block_until_ready()  # the backend's one-time start
    return True, ""


def _xent(z, y):
    lse = jax.nn.logsumexp(z, axis=1)
    return jnp.mean(lse - jnp.take_along_axis(z, y[:, None], axis=1)[:, 0])


def _dense(x, w, b):
    return x @ w.T + b


def mlp(w1, b1, w2, b2, x, y):
    return _xent(_dense(jnp.tanh(_dense(x, w1, b1)), w2, b2), y)


def rnn(wx, wh, b, xs, h0):
    h, _ = lax.scan(lambda h, x: (jnp.tanh(x @ wx + h @ wh + b), None), h0, xs)
    return jnp.sum(h * h)


def lstm(wi, wh, b, xs, h0, c0):
    n = h0.shape[-1]

    def cell(state, x):
        h, c = state
        g = _dense(x, wi, b) + h @ wh.T
        i, f = jax.nn.sigmoid(g[:, :n]), jax.nn.sigmoid(g[:, n : 2 * n])
        u, o = jnp.tanh(g[:, 2 * n : 3 * n]), jax.nn.sigmoid(g[:, 3 * n :])
        c = f * c + i * u
        return (o * jnp.tanh(c), c), None

    (h, _), _ = lax.scan(cell, (h0, c0), xs)
    return jnp.sum(h * h)


def gru(wi, wh, bi, bh, xs, h0):
    n = h0.shape[-1]

    def cell(h, x):
        gi, gh = _dense(x, wi, bi), _dense(h, wh, bh)
        r = jax.nn.sigmoid(gi[:, :n] + gh[:, :n])
        z = jax.nn.sigmoid(gi[:, n : 2 * n] + gh[:, n : 2 * n])
        new = jnp.tanh(gi[:, 2 * n :] + r * gh[:, 2 * n :])
        return (1.0 - z) * new + z * h, None

    h, _ = lax.scan(cell, h0, xs)
    return jnp.sum(h * h)


def _mha(x, mask, wq, wk, wv, wo, bq, bk, bv, bo, heads=4):
    b, t, d = x.shape

    def split(w, bias):
        return _dense(x, w, bias).reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)

    q, k, v = split(wq, bq), split(wk, bk), split(wv, bv)
    s = jnp.where(mask, q @ k.transpose(0, 1, 3, 2) / jnp.sqrt(d // heads).astype(x.dtype), -jnp.inf)
    o = jax.nn.softmax(s, axis=-1) @ v
    return _dense(o.transpose(0, 2, 1, 3).reshape(b, t, d), wo, bo)


def _layer_norm(x, g, b):
    m = jnp.mean(x, axis=-1, keepdims=True)
    c = x - m
    return g * c / jnp.sqrt(jnp.mean(c * c, axis=-1, keepdims=True) + 1e-5) + b


def attention(wq, wk, wv, wo, bq, bk, bv, bo, x, mask):
    y = _mha(x, mask, wq, wk, wv, wo, bq, bk, bv, bo)
    return jnp.sum(y * y)


def transformer(g1, c1, wq, wk, wv, wo, bq, bk, bv, bo, g2, c2, w1, b1, w2, b2, x, mask):
    a = x + _mha(_layer_norm(x, g1, c1), mask, wq, wk, wv, wo, bq, bk, bv, bo)
    y = a + _dense(jax.nn.gelu(_dense(_layer_norm(a, g2, c2), w1, b1), approximate=False), w2, b2)
    return jnp.sum(y * y)


def conv(k, bk, wd, bd, x, y):
    z = lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1))) + bk[None, :, None, None]
    a = lax.reduce_window(jax.nn.relu(z), -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
    return _xent(_dense(a.reshape(a.shape[0], -1), wd, bd), y)


def xent(z, y):
    return _xent(z, y)


def elementwise(x):
    u = jnp.sin(x) * jnp.exp(-0.5 * x * x) + x / (1.0 + x * x)
    return jnp.sum(jnp.tanh(u) * jax.nn.sigmoid(x) + jnp.log(1.0 + x * x))


def comprehension(px, py):
    dx, dy = px[:, None] - px[None, :], py[:, None] - py[None, :]
    return jnp.sum(jnp.exp(-(dx**2 + dy**2)))


LOSSES = {f.__name__: f for f in (mlp, rnn, lstm, gru, attention, transformer, conv, xent, elementwise, comprehension)}


def make(name, params, inputs):
    loss = LOSSES.get(name)
    if loss is None:
        return None
    return jitted(loss, params, inputs)

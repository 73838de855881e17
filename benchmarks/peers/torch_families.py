"""The benchmark families (benchmarks/families.py) in PyTorch, eager, the same math as the DFL
programs, written with PyTorch's fused operations where it has them (lstm_cell, gru_cell,
scaled_dot_product_attention, layer_norm, conv2d, cross_entropy): the best a user gets.
fwd runs under torch.no_grad(); value_and_grad is torch.autograd.grad over the params."""

from __future__ import annotations

import functools

from .torch_peer import calls

try:
    import torch
    import torch.nn.functional as tf

    IMPORT_ERROR = ""
except ImportError as e:  # reported as a missing peer
    IMPORT_ERROR = f"torch is not installed ({e})"


@functools.cache
def available():
    return (False, IMPORT_ERROR) if IMPORT_ERROR else (True, "")


def mlp(w1, b1, w2, b2, x, y):
    return tf.cross_entropy(tf.linear(torch.tanh(tf.linear(x, w1, b1)), w2, b2), y)


def rnn(wx, wh, b, xs, h0):
    h = h0
    for x in xs:
        h = torch.tanh(x @ wx + h @ wh + b)
    return torch.sum(h * h)


def lstm(wi, wh, b, xs, h0, c0):
    h, c = h0, c0
    for x in xs:
        h, c = torch.lstm_cell(x, (h, c), wi, wh, b, None)
    return torch.sum(h * h)


def gru(wi, wh, bi, bh, xs, h0):
    h = h0
    for x in xs:
        h = torch.gru_cell(x, h, wi, wh, bi, bh)
    return torch.sum(h * h)


def multi_head_attention(x, mask, wq, wk, wv, wo, bq, bk, bv, bo, heads=4):
    b, t, d = x.shape

    def split(w, bias):
        return tf.linear(x, w, bias).reshape(b, t, heads, d // heads).transpose(1, 2)

    o = tf.scaled_dot_product_attention(split(wq, bq), split(wk, bk), split(wv, bv), attn_mask=mask)
    return tf.linear(o.transpose(1, 2).reshape(b, t, d), wo, bo)


def attention(wq, wk, wv, wo, bq, bk, bv, bo, x, mask):
    y = multi_head_attention(x, mask, wq, wk, wv, wo, bq, bk, bv, bo)
    return torch.sum(y * y)


def transformer(g1, c1, wq, wk, wv, wo, bq, bk, bv, bo, g2, c2, w1, b1, w2, b2, x, mask):
    d = x.shape[-1]
    a = x + multi_head_attention(tf.layer_norm(x, (d,), g1, c1, 1e-5), mask, wq, wk, wv, wo, bq, bk, bv, bo)
    y = a + tf.linear(tf.gelu(tf.linear(tf.layer_norm(a, (d,), g2, c2, 1e-5), w1, b1)), w2, b2)
    return torch.sum(y * y)


def conv(k, bk, wd, bd, x, y):
    a = tf.max_pool2d(torch.relu(tf.conv2d(x, k, bk, padding=1)), 2)
    return tf.cross_entropy(tf.linear(a.flatten(1), wd, bd), y)


def xent(z, y):
    return tf.cross_entropy(z, y)


def elementwise(x):
    u = torch.sin(x) * torch.exp(-0.5 * x * x) + x / (1.0 + x * x)
    return torch.sum(torch.tanh(u) * torch.sigmoid(x) + torch.log(1.0 + x * x))


def comprehension(px, py):
    dx, dy = px[:, None] - px[None, :], py[:, None] - py[None, :]
    return torch.sum(torch.exp(-(dx**2 + dy**2)))


LOSSES = {f.__name__: f for f in (mlp, rnn, lstm, gru, attention, transformer, conv, xent, elementwise, comprehension)}


def make(name, params, inputs):
    loss = LOSSES.get(name)
    if loss is None:
        return None
    return calls(loss, params, inputs)

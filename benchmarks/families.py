"""The benchmark families (issue 12): each a DFL program over flat parameter arrays (built on the
stdlib nn where it fits), a data generator per size and dtype, and the same math in PyTorch
(peers/torch_families.py) and JAX (peers/jax_families.py).

A family's `loss(*params, *inputs)` is a scalar; the gradient is taken with respect to every
param. Sizes go from small to large; `--quick` runs the first QUICK_SIZES of each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

QUICK_SIZES = 3


@dataclass(frozen=True)
class Family:
    name: str
    source: str  # DFL, defining fn loss(*params, *inputs)
    sizes: list  # dicts of the size parameters, small to large
    make: Callable  # (rng, **size) -> (params, inputs), float64 NumPy arrays (ints for labels)
    label_format: str  # str.format of a size: a short text for the tables and the plot

    def label(self, size: dict) -> str:
        return self.label_format.format(**size)


def family(name, source, keys, rows, make, label_format):
    """A Family whose sizes are given as rows of values for `keys`, the names of `make`'s size
    parameters."""
    return Family(name, source, [dict(zip(keys, row)) for row in rows], make, label_format)


def normal(rng, shape, fan_in=1):
    return rng.standard_normal(shape) / np.sqrt(fan_in)


def _bias(rng, n):
    return 0.1 * normal(rng, n)


def _layer(rng, shape):
    """A dense or convolution layer's [weight of `shape`, bias]: the weight scaled by its fan-in
    (every dimension but the first), then the bias."""
    return [normal(rng, shape, np.prod(shape[1:])), _bias(rng, shape[0])]


def _norm(rng, d):
    """A layer norm's [gain near 1, bias]."""
    return [1.0 + 0.1 * normal(rng, d), _bias(rng, d)]


def _mlp(rng, batch, d_in, hidden, classes):
    params = [*_layer(rng, (hidden, d_in)), *_layer(rng, (classes, hidden))]
    return params, [normal(rng, (batch, d_in)), rng.integers(0, classes, batch)]


def _rnn(rng, steps, batch, d_in, hidden):
    params = [normal(rng, (d_in, hidden), d_in), normal(rng, (hidden, hidden), 2 * hidden), _bias(rng, hidden)]
    return params, [normal(rng, (steps, batch, d_in)), np.zeros((batch, hidden))]


def _gated(gates, biases, states):
    """An LSTM's or GRU's data: `gates` stacked gate weights, `biases` bias vectors, `states`
    zero initial states."""

    def make(rng, steps, batch, d_in, hidden):
        n = gates * hidden
        wi, wh = normal(rng, (n, d_in), d_in), normal(rng, (n, hidden), hidden)
        bs = [_bias(rng, n) for _ in range(biases)]
        return [wi, wh, *bs], [normal(rng, (steps, batch, d_in)), *(np.zeros((batch, hidden)) for _ in range(states))]

    return make


def _attention_params(rng, d):
    ws = [normal(rng, (d, d), d) for _ in range(4)]
    return ws + [_bias(rng, d) for _ in range(4)]  # wq, wk, wv, wo, bq, bk, bv, bo


def _causal(t):
    return np.tril(np.ones((t, t), dtype=bool))


def _attention(rng, batch, t, d):
    return _attention_params(rng, d), [normal(rng, (batch, t, d)), _causal(t)]


def _transformer(rng, batch, t, d, d_ff):
    # drawn in this order (the attention's params last), though they are passed as g1, c1, attention, ...
    ln1, ln2, ff = _norm(rng, d), _norm(rng, d), [*_layer(rng, (d_ff, d)), *_layer(rng, (d, d_ff))]
    return [*ln1, *_attention_params(rng, d), *ln2, *ff], [normal(rng, (batch, t, d)), _causal(t)]


def _conv(rng, batch, c_in, hw, c_out, classes=10):
    params = [*_layer(rng, (c_out, c_in, 3, 3)), *_layer(rng, (classes, c_out * (hw // 2) ** 2))]
    return params, [normal(rng, (batch, c_in, hw, hw)), rng.integers(0, classes, batch)]


def _xent(rng, batch, classes):
    return [2.0 * normal(rng, (batch, classes))], [rng.integers(0, classes, batch)]


def _elementwise(rng, n):
    return [normal(rng, n)], []


def _pairwise(rng, n):
    return [normal(rng, n), normal(rng, n)], []


SEQUENCE = ("steps", "batch", "d_in", "hidden")
SEQUENCE_LABEL = "T{steps} b{batch} h{hidden}"
GATED_ROWS = [(20, 8, 16, 32), (50, 16, 32, 64), (100, 32, 64, 128), (100, 64, 128, 256)]

FAMILIES = [
    family(
        "mlp",
        """import nn
fn loss(w1, b1, w2, b2, x, y) {
    let h = tanh(nn.dense({w: w1, b: b1}, x));
    nn.cross_entropy_batch(nn.dense({w: w2, b: b2}, h), y, 0.0)
}""",
        ("batch", "d_in", "hidden", "classes"),
        [(32, 64, 64, 10), (64, 256, 256, 10), (128, 784, 512, 10), (256, 1024, 1024, 100)],
        _mlp,
        "{batch}x{d_in}-{hidden}",
    ),
    family(
        "rnn",
        """fn loss(wx, wh, b, xs, h0) {
    let h = fold(fn(h, x) => tanh(x @ wx + h @ wh + b), h0, xs);
    sum(h * h)
}""",
        SEQUENCE,
        [(20, 8, 16, 32), (50, 16, 32, 64), (100, 32, 64, 128), (200, 64, 64, 256)],
        _rnn,
        SEQUENCE_LABEL,
    ),
    family(
        "lstm",
        """import nn
fn loss(wi, wh, b, xs, h0, c0) {
    let (state, hs) = nn.lstm({wi: wi, wh: wh, b: b}, (h0, c0), xs);
    sum(state.0 * state.0)
}""",
        SEQUENCE,
        GATED_ROWS,
        _gated(gates=4, biases=1, states=2),
        SEQUENCE_LABEL,
    ),
    family(
        "gru",
        """import nn
fn loss(wi, wh, bi, bh, xs, h0) {
    let (h, hs) = nn.gru({wi: wi, wh: wh, bi: bi, bh: bh}, h0, xs);
    sum(h * h)
}""",
        SEQUENCE,
        GATED_ROWS,
        _gated(gates=3, biases=2, states=1),
        SEQUENCE_LABEL,
    ),
    family(
        "attention",
        """import nn
fn loss(wq, wk, wv, wo, bq, bk, bv, bo, x, mask) {
    let p = {wq: wq, wk: wk, wv: wv, wo: wo, bq: bq, bk: bk, bv: bv, bo: bo};
    let y = nn.multi_head_attention(p, x, mask, 4);
    sum(y * y)
}""",
        ("batch", "t", "d"),
        [(2, 16, 32), (4, 64, 64), (8, 128, 128), (8, 256, 256)],
        _attention,
        "b{batch} t{t} d{d}",
    ),
    family(
        "transformer",
        """import nn
fn loss(g1, c1, wq, wk, wv, wo, bq, bk, bv, bo, g2, c2, w1, b1, w2, b2, x, mask) {
    let p = {ln1: {g: g1, b: c1},
             attn: {wq: wq, wk: wk, wv: wv, wo: wo, bq: bq, bk: bk, bv: bv, bo: bo},
             ln2: {g: g2, b: c2}, ff1: {w: w1, b: b1}, ff2: {w: w2, b: b2}};
    let y = nn.transformer_encoder(p, x, mask, 4);
    sum(y * y)
}""",
        ("batch", "t", "d", "d_ff"),
        [(2, 16, 32, 64), (4, 64, 64, 256), (8, 128, 128, 512), (8, 256, 256, 1024)],
        _transformer,
        "b{batch} t{t} d{d}",
    ),
    family(
        "conv",
        """import nn
fn loss(k, bk, wd, bd, x, y) {
    let a = nn.max_pool2d(relu(nn.conv2d({w: k, b: bk}, x, 1, 1, 1)), 2, 2);
    let s = shape(a);
    let flat = reshape(a, [s[0], s[1] * s[2] * s[3]]);
    nn.cross_entropy_batch(nn.dense({w: wd, b: bd}, flat), y, 0.0)
}""",
        ("batch", "c_in", "hw", "c_out"),
        [(8, 1, 8, 4), (32, 3, 16, 8), (32, 3, 32, 16), (64, 8, 32, 32)],
        _conv,
        "{batch}x{c_in}x{hw}x{hw} k{c_out}",
    ),
    family(
        "xent",
        """import nn
fn loss(z, y) = nn.cross_entropy_batch(z, y, 0.0)""",
        ("batch", "classes"),
        [(64, 100), (256, 1000), (512, 10000), (256, 100000)],
        _xent,
        "{batch}x{classes}",
    ),
    family(
        "elementwise",
        """fn loss(x) {
    let u = sin(x) * exp(-0.5 * x * x) + x / (1.0 + x * x);
    sum(tanh(u) * sigmoid(x) + log(1.0 + x * x))
}""",
        ("n",),
        [(1000,), (30000,), (300000,), (3000000,)],
        _elementwise,
        "n={n}",
    ),
    family(
        "comprehension",
        """# The Gaussian-kernel energy of n points in the plane, as a comprehension over all pairs.
fn loss(px, py) {
    let n = len(px);
    sum(for i in 0..n, j in 0..n => exp(-((px[i] - px[j]) ** 2 + (py[i] - py[j]) ** 2)))
}""",
        ("n",),
        [(32,), (128,), (512,), (1024,)],
        _pairwise,
        "n={n}",
    ),
]
BY_NAME = {f.name: f for f in FAMILIES}
NAMES = [f.name for f in FAMILIES]
DTYPES = {"f64": np.float64, "f32": np.float32}


def data(family: Family, size: dict, dtype: str):
    """(params, inputs) of a family at one size, floats in `dtype`; the same draw for both dtypes."""
    rng = np.random.default_rng(sorted(BY_NAME).index(family.name))
    params, inputs = family.make(rng, **size)
    cast = DTYPES[dtype]
    as_dtype = [np.ascontiguousarray(a, dtype=cast) if np.asarray(a).dtype.kind == "f" else a for a in params + inputs]
    return as_dtype[: len(params)], as_dtype[len(params) :]

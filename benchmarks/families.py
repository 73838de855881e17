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
    data: Callable  # (size, rng) -> (params, inputs), float64 NumPy arrays (ints for labels)
    label: Callable  # size -> a short text for the tables and the plot


def normal(rng, shape, fan_in=1):
    return rng.standard_normal(shape) / np.sqrt(fan_in)


def _mlp(s, rng):
    b, d, h, c = s["batch"], s["d_in"], s["hidden"], s["classes"]
    params = [normal(rng, (h, d), d), 0.1 * normal(rng, h), normal(rng, (c, h), h), 0.1 * normal(rng, c)]
    return params, [normal(rng, (b, d)), rng.integers(0, c, b)]


def _rnn(s, rng):
    t, b, d, n = s["steps"], s["batch"], s["d_in"], s["hidden"]
    params = [normal(rng, (d, n), d), normal(rng, (n, n), 2 * n), 0.1 * normal(rng, n)]
    return params, [normal(rng, (t, b, d)), np.zeros((b, n))]


def _gated(gates):
    def make(s, rng):
        t, b, d, n = s["steps"], s["batch"], s["d_in"], s["hidden"]
        wi, wh = normal(rng, (gates * n, d), d), normal(rng, (gates * n, n), n)
        biases = [0.1 * normal(rng, gates * n) for _ in range(1 if gates == 4 else 2)]
        state = [np.zeros((b, n)) for _ in range(2 if gates == 4 else 1)]
        return [wi, wh, *biases], [normal(rng, (t, b, d)), *state]

    return make


def _attention_params(rng, d):
    ws = [normal(rng, (d, d), d) for _ in range(4)]
    bs = [0.1 * normal(rng, d) for _ in range(4)]
    return ws + bs  # wq, wk, wv, wo, bq, bk, bv, bo


def _causal(t):
    return np.tril(np.ones((t, t), dtype=bool))


def _attention(s, rng):
    b, t, d = s["batch"], s["t"], s["d"]
    return _attention_params(rng, d), [normal(rng, (b, t, d)), _causal(t)]


def _transformer(s, rng):
    b, t, d, f = s["batch"], s["t"], s["d"], s["d_ff"]
    ln = [1.0 + 0.1 * normal(rng, d), 0.1 * normal(rng, d)]
    ln2 = [1.0 + 0.1 * normal(rng, d), 0.1 * normal(rng, d)]
    ff = [normal(rng, (f, d), d), 0.1 * normal(rng, f), normal(rng, (d, f), f), 0.1 * normal(rng, d)]
    return [*ln, *_attention_params(rng, d), *ln2, *ff], [normal(rng, (b, t, d)), _causal(t)]


def _conv(s, rng):
    n, c, hw, k, classes = s["batch"], s["c_in"], s["hw"], s["c_out"], 10
    flat = k * (hw // 2) ** 2
    params = [
        normal(rng, (k, c, 3, 3), 9 * c),
        0.1 * normal(rng, k),
        normal(rng, (classes, flat), flat),
        0.1 * normal(rng, classes),
    ]
    return params, [normal(rng, (n, c, hw, hw)), rng.integers(0, classes, n)]


def _xent(s, rng):
    b, c = s["batch"], s["classes"]
    return [2.0 * normal(rng, (b, c))], [rng.integers(0, c, b)]


def _elementwise(s, rng):
    return [normal(rng, s["n"])], []


def _pairwise(s, rng):
    return [normal(rng, s["n"]), normal(rng, s["n"])], []


FAMILIES = [
    Family(
        "mlp",
        """import nn
fn loss(w1, b1, w2, b2, x, y) {
    let h = tanh(nn.dense({w: w1, b: b1}, x));
    nn.cross_entropy_batch(nn.dense({w: w2, b: b2}, h), y, 0.0)
}""",
        [
            {"batch": 32, "d_in": 64, "hidden": 64, "classes": 10},
            {"batch": 64, "d_in": 256, "hidden": 256, "classes": 10},
            {"batch": 128, "d_in": 784, "hidden": 512, "classes": 10},
            {"batch": 256, "d_in": 1024, "hidden": 1024, "classes": 100},
        ],
        _mlp,
        lambda s: f"{s['batch']}x{s['d_in']}-{s['hidden']}",
    ),
    Family(
        "rnn",
        """fn loss(wx, wh, b, xs, h0) {
    let h = fold(fn(h, x) => tanh(x @ wx + h @ wh + b), h0, xs);
    sum(h * h)
}""",
        [
            {"steps": 20, "batch": 8, "d_in": 16, "hidden": 32},
            {"steps": 50, "batch": 16, "d_in": 32, "hidden": 64},
            {"steps": 100, "batch": 32, "d_in": 64, "hidden": 128},
            {"steps": 200, "batch": 64, "d_in": 64, "hidden": 256},
        ],
        _rnn,
        lambda s: f"T{s['steps']} b{s['batch']} h{s['hidden']}",
    ),
    Family(
        "lstm",
        """import nn
fn loss(wi, wh, b, xs, h0, c0) {
    let (state, hs) = nn.lstm({wi: wi, wh: wh, b: b}, (h0, c0), xs);
    sum(state.0 * state.0)
}""",
        [
            {"steps": 20, "batch": 8, "d_in": 16, "hidden": 32},
            {"steps": 50, "batch": 16, "d_in": 32, "hidden": 64},
            {"steps": 100, "batch": 32, "d_in": 64, "hidden": 128},
            {"steps": 100, "batch": 64, "d_in": 128, "hidden": 256},
        ],
        _gated(4),
        lambda s: f"T{s['steps']} b{s['batch']} h{s['hidden']}",
    ),
    Family(
        "gru",
        """import nn
fn loss(wi, wh, bi, bh, xs, h0) {
    let (h, hs) = nn.gru({wi: wi, wh: wh, bi: bi, bh: bh}, h0, xs);
    sum(h * h)
}""",
        [
            {"steps": 20, "batch": 8, "d_in": 16, "hidden": 32},
            {"steps": 50, "batch": 16, "d_in": 32, "hidden": 64},
            {"steps": 100, "batch": 32, "d_in": 64, "hidden": 128},
            {"steps": 100, "batch": 64, "d_in": 128, "hidden": 256},
        ],
        _gated(3),
        lambda s: f"T{s['steps']} b{s['batch']} h{s['hidden']}",
    ),
    Family(
        "attention",
        """import nn
fn loss(wq, wk, wv, wo, bq, bk, bv, bo, x, mask) {
    let p = {wq: wq, wk: wk, wv: wv, wo: wo, bq: bq, bk: bk, bv: bv, bo: bo};
    let y = nn.multi_head_attention(p, x, mask, 4);
    sum(y * y)
}""",
        [
            {"batch": 2, "t": 16, "d": 32},
            {"batch": 4, "t": 64, "d": 64},
            {"batch": 8, "t": 128, "d": 128},
            {"batch": 8, "t": 256, "d": 256},
        ],
        _attention,
        lambda s: f"b{s['batch']} t{s['t']} d{s['d']}",
    ),
    Family(
        "transformer",
        """import nn
fn loss(g1, c1, wq, wk, wv, wo, bq, bk, bv, bo, g2, c2, w1, b1, w2, b2, x, mask) {
    let p = {ln1: {g: g1, b: c1},
             attn: {wq: wq, wk: wk, wv: wv, wo: wo, bq: bq, bk: bk, bv: bv, bo: bo},
             ln2: {g: g2, b: c2}, ff1: {w: w1, b: b1}, ff2: {w: w2, b: b2}};
    let y = nn.transformer_encoder(p, x, mask, 4);
    sum(y * y)
}""",
        [
            {"batch": 2, "t": 16, "d": 32, "d_ff": 64},
            {"batch": 4, "t": 64, "d": 64, "d_ff": 256},
            {"batch": 8, "t": 128, "d": 128, "d_ff": 512},
            {"batch": 8, "t": 256, "d": 256, "d_ff": 1024},
        ],
        _transformer,
        lambda s: f"b{s['batch']} t{s['t']} d{s['d']}",
    ),
    Family(
        "conv",
        """import nn
fn loss(k, bk, wd, bd, x, y) {
    let a = nn.max_pool2d(relu(nn.conv2d({w: k, b: bk}, x, 1, 1, 1)), 2, 2);
    let s = shape(a);
    let flat = reshape(a, [s[0], s[1] * s[2] * s[3]]);
    nn.cross_entropy_batch(nn.dense({w: wd, b: bd}, flat), y, 0.0)
}""",
        [
            {"batch": 8, "c_in": 1, "hw": 8, "c_out": 4},
            {"batch": 32, "c_in": 3, "hw": 16, "c_out": 8},
            {"batch": 32, "c_in": 3, "hw": 32, "c_out": 16},
            {"batch": 64, "c_in": 8, "hw": 32, "c_out": 32},
        ],
        _conv,
        lambda s: f"{s['batch']}x{s['c_in']}x{s['hw']}x{s['hw']} k{s['c_out']}",
    ),
    Family(
        "xent",
        """import nn
fn loss(z, y) = nn.cross_entropy_batch(z, y, 0.0)""",
        [
            {"batch": 64, "classes": 100},
            {"batch": 256, "classes": 1000},
            {"batch": 512, "classes": 10000},
            {"batch": 256, "classes": 100000},
        ],
        _xent,
        lambda s: f"{s['batch']}x{s['classes']}",
    ),
    Family(
        "elementwise",
        """fn loss(x) {
    let u = sin(x) * exp(-0.5 * x * x) + x / (1.0 + x * x);
    sum(tanh(u) * sigmoid(x) + log(1.0 + x * x))
}""",
        [{"n": 1000}, {"n": 30000}, {"n": 300000}, {"n": 3000000}],
        _elementwise,
        lambda s: f"n={s['n']}",
    ),
    Family(
        "comprehension",
        """# The Gaussian-kernel energy of n points in the plane, as a comprehension over all pairs.
fn loss(px, py) {
    let n = len(px);
    sum(for i in 0..n, j in 0..n => exp(-((px[i] - px[j]) ** 2 + (py[i] - py[j]) ** 2)))
}""",
        [{"n": 32}, {"n": 128}, {"n": 512}, {"n": 1024}],
        _pairwise,
        lambda s: f"n={s['n']}",
    ),
]
BY_NAME = {f.name: f for f in FAMILIES}
NAMES = [f.name for f in FAMILIES]
DTYPES = {"f64": np.float64, "f32": np.float32}


def data(family: Family, size: dict, dtype: str):
    """(params, inputs) of a family at one size, floats in `dtype`; the same draw for both dtypes."""
    rng = np.random.default_rng(sorted(BY_NAME).index(family.name))
    params, inputs = family.data(size, rng)
    cast = DTYPES[dtype]
    as_dtype = [np.ascontiguousarray(a, dtype=cast) if np.asarray(a).dtype.kind == "f" else a for a in params + inputs]
    return as_dtype[: len(params)], as_dtype[len(params) :]

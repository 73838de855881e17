"""The nn standard library (stdlib/nn.dfl) against NumPy references written here, and its
derivatives against finite differences (diffc.gradcheck: grad, vjp and jvp).

Static arguments (strides, kernel sizes, heads) are DFL literals, so each case compiles a small
program that calls nn with them; arrays come from Python, in f64 and in f32."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import diffc
from diffc.gradcheck import gradcheck
from diffc.ir.walk import all_eqns
from diffc.lower.emit import siblings
from diffc.pipeline import to_ir
from diffc.typesys import TensorType, boolean, f64, i64

RNG = np.random.default_rng(11)


@functools.cache
def nn_program(body: str) -> diffc.Module:
    return diffc.compile("import nn\n" + body, "nn_test.dfl")


def check_grads(body: str, name: str, *args) -> None:
    """`name`'s derivatives at args agree with central finite differences."""
    module = nn_program(body)
    params = module.ast.fns[name].params
    lines, ok = gradcheck(module, name, {p.name: a for p, a in zip(params, args)})
    assert ok, "\n".join(lines)


def normal(*shape, dtype=np.float64):
    return RNG.standard_normal(shape).astype(dtype)


# --- NumPy references ------------------------------------------------------------------------


def conv2d_ref(x, w, b, stride, padding, dilation):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    wo = (wd + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            r, s = i * dilation, j * dilation
            tap = xp[:, :, r : r + stride * (ho - 1) + 1 : stride, s : s + stride * (wo - 1) + 1 : stride]
            y += np.einsum("nchw,oc->nohw", tap, w[:, :, i, j])
    return y + b[None, :, None, None]


def pool_ref(x, kernel, stride, reduce):
    n, c, h, w = x.shape
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    y = np.zeros((n, c, ho, wo))
    for a in range(ho):
        for b in range(wo):
            y[:, :, a, b] = reduce(
                x[:, :, a * stride : a * stride + kernel, b * stride : b * stride + kernel], axis=(2, 3)
            )
    return y


def layer_norm_ref(g, b, x):
    m = x.mean(-1, keepdims=True)
    return g * (x - m) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) + b


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_cell_ref(p, h, c, x):
    g = x @ p["wi"].T + h @ p["wh"].T + p["b"]
    i, f, gg, o = np.split(g, 4, axis=-1)
    c2 = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
    return sigmoid(o) * np.tanh(c2), c2


def gru_cell_ref(p, h, x):
    gi = x @ p["wi"].T + p["bi"]
    gh = h @ p["wh"].T + p["bh"]
    (ir, iz, inn), (hr, hz, hn) = np.split(gi, 3, axis=-1), np.split(gh, 3, axis=-1)
    r, z = sigmoid(ir + hr), sigmoid(iz + hz)
    n = np.tanh(inn + r * hn)
    return (1 - z) * n + z * h


def attention_ref(p, x, mask, heads):
    b, t, d = x.shape
    dh = d // heads

    def proj(w, bias):
        return (x @ w.T + bias).reshape(b, t, heads, dh).transpose(0, 2, 1, 3)

    q, k, v = proj(p["wq"], p["bq"]), proj(p["wk"], p["bk"]), proj(p["wv"], p["bv"])
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
    s = np.where(mask, s, -np.inf)
    with np.errstate(invalid="ignore"):
        e = np.exp(s - s.max(-1, keepdims=True))
    e = np.where(mask, e, 0.0)
    total = e.sum(-1, keepdims=True)
    a = e / np.where(total > 0, total, 1.0)
    out = (a @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    return out @ p["wo"].T + p["bo"]


def gelu_ref(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def attention_params(d, dtype=np.float64):
    return {n: normal(d, d, dtype=dtype) / math.sqrt(d) for n in ("wq", "wk", "wv", "wo")} | {
        n: normal(d, dtype=dtype) for n in ("bq", "bk", "bv", "bo")
    }


# --- convolution and pooling -------------------------------------------------------------------

CONV_CASES = [  # (stride, padding, dilation, kernel h, kernel w)
    (1, 0, 1, 3, 3),
    (1, 1, 1, 3, 3),
    (2, 1, 1, 3, 3),
    (1, 2, 2, 3, 2),
    (3, 0, 1, 2, 2),
    (2, 3, 2, 1, 3),
]


# (h, w) of the images: fewer than 256 pixels of output (one product for the batch) and more
# (a product per image), whatever the stride, padding and dilation of CONV_CASES
CONV_SIZES = [(7, 6), (52, 50)]


@pytest.mark.parametrize("hw", CONV_SIZES)
@pytest.mark.parametrize("c_in", [3, 8])  # (planes gathered, then transposed; a pixel's channels gathered)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("stride,padding,dilation,kh,kw", CONV_CASES)
def test_conv2d_matches_numpy(stride, padding, dilation, kh, kw, dtype, c_in, hw):
    m = nn_program(f"fn f(p, x) = nn.conv2d(p, x, {stride}, {padding}, {dilation})")
    x = normal(2, c_in, *hw, dtype=dtype)
    p = {"w": normal(4, c_in, kh, kw, dtype=dtype), "b": normal(4, dtype=dtype)}
    y = m.f(p, x)
    assert y.dtype == dtype
    want = conv2d_ref(*(a.astype(np.float64) for a in (x, p["w"], p["b"])), stride, padding, dilation)
    np.testing.assert_allclose(y, want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_conv2d_batch_1_single_pixel_output_and_infinities():
    m = nn_program("fn f(p, x) = nn.conv2d(p, x, 1, 0, 1)")
    x = normal(1, 2, 3, 3)
    p = {"w": normal(5, 2, 3, 3), "b": normal(5)}
    np.testing.assert_allclose(m.f(p, x), conv2d_ref(x, p["w"], p["b"], 1, 0, 1), rtol=1e-12)
    x[0, 1, 2, 2] = np.inf
    p["w"][:, 1, 2, 2] = 1.0
    assert np.all(m.f(p, x) == np.inf)


@pytest.mark.parametrize("hw", [(6, 7), (34, 36)])  # (256 pixels of output and more in both cases)
@pytest.mark.parametrize("c_in", [2, 9])
@pytest.mark.parametrize("stride,padding,dilation,kh,kw", [(1, 1, 1, 3, 3), (2, 0, 2, 2, 3)])
def test_conv2d_gradient(stride, padding, dilation, kh, kw, c_in, hw):
    body = f"fn loss(p, x, r) = sum(nn.conv2d(p, x, {stride}, {padding}, {dilation}) * r)"
    x = normal(2, c_in, *hw)
    p = {"w": normal(3, c_in, kh, kw), "b": normal(3)}
    r = normal(*conv2d_ref(x, p["w"], p["b"], stride, padding, dilation).shape)
    check_grads(body, "loss", p, x, r)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 3), (3, 1), (2, 3), (3, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pooling_matches_numpy(kernel, stride, dtype):
    m = nn_program(f"fn f(x) = (nn.max_pool2d(x, {kernel}, {stride}), nn.avg_pool2d(x, {kernel}, {stride}))")
    x = normal(2, 3, 7, 8, dtype=dtype)
    mx, avg = m.f(x)
    assert mx.dtype == avg.dtype == dtype
    np.testing.assert_array_equal(mx, pool_ref(x, kernel, stride, np.max))
    tol = 1e-5 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(avg, pool_ref(x.astype(np.float64), kernel, stride, np.mean), rtol=tol, atol=tol)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 1)])
def test_pooling_gradient(kernel, stride):
    body = f"fn loss(x, r) = sum((nn.max_pool2d(x, {kernel}, {stride}) + nn.avg_pool2d(x, {kernel}, {stride})) * r)"
    x = normal(1, 2, 5, 6)
    r = normal(*pool_ref(x, kernel, stride, np.max).shape)
    check_grads(body, "loss", x, r)


@pytest.mark.parametrize("kernel,stride", [(2, 2), (2, 1)])
def test_max_pool_tie_sends_the_cotangent_to_the_first_largest(kernel, stride):
    m = nn_program(f"fn g(x) = grad(fn(y) => sum(nn.max_pool2d(y, {kernel}, {stride})))(x)")
    # one window (kernel 2 over 2x2): the first largest in row-major order gets it all
    for x, first in [(np.ones((2, 2)), (0, 0)), (np.array([[0.0, 5.0], [5.0, 0.0]]), (0, 1))]:
        want = np.zeros((1, 1, 2, 2))
        want[(0, 0, *first)] = 1.0
        np.testing.assert_array_equal(m.g(x.reshape(1, 1, 2, 2)), want)


# --- normalisation, activations, dropout, embedding --------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5,), (1, 4), (3, 2, 6)])
def test_layer_norm_over_the_last_axis(shape, dtype):
    m = nn_program("fn f(p, x) = nn.layer_norm(p, x)")
    x = normal(*shape, dtype=dtype)
    p = {"g": normal(shape[-1], dtype=dtype), "b": normal(shape[-1], dtype=dtype)}
    y = m.f(p, x)
    assert y.dtype == dtype
    want = layer_norm_ref(p["g"].astype(float), p["b"].astype(float), x.astype(float))
    np.testing.assert_allclose(y, want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-6)


def test_layer_norm_of_a_constant_row_is_its_bias_and_gradient():
    m = nn_program("fn f(p, x) = nn.layer_norm(p, x)")
    p = {"g": np.ones(3), "b": np.array([1.0, 2.0, 3.0])}
    np.testing.assert_array_equal(m.f(p, np.full((2, 3), 7.0)), [[1.0, 2.0, 3.0]] * 2)
    check_grads("fn loss(p, x, r) = sum(nn.layer_norm(p, x) * r)", "loss", p, normal(2, 3), normal(2, 3))


@pytest.mark.parametrize("shape", [(6, 3), (4, 2, 3, 3), (1, 2)])
def test_batch_norm_train_and_eval(shape):
    m = nn_program("fn train(p, s, x) = nn.batch_norm_train(p, s, x)\nfn ev(p, s, x) = nn.batch_norm_eval(p, s, x)")
    c = shape[1]
    x = normal(*shape)
    p = {"g": normal(c), "b": normal(c)}
    stats = {"mean": normal(c), "var": np.abs(normal(c)) + 0.5}
    y, new = m.train(p, stats, x)
    axes = tuple(a for a in range(x.ndim) if a != 1)
    bshape = [1, c] + [1] * (x.ndim - 2)
    mean, var = x.mean(axes), x.var(axes)
    want = p["g"].reshape(bshape) * (x - mean.reshape(bshape)) / np.sqrt(var.reshape(bshape) + 1e-5)
    np.testing.assert_allclose(y, want + p["b"].reshape(bshape), rtol=1e-10, atol=1e-12)
    count = x.size // c
    unbiased = var * count / max(count - 1, 1)
    np.testing.assert_allclose(new["mean"], 0.9 * stats["mean"] + 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(new["var"], 0.9 * stats["var"] + 0.1 * unbiased, rtol=1e-12)
    r = lambda v: v.reshape(bshape)  # noqa: E731
    want_eval = r(p["g"]) * (x - r(stats["mean"])) / np.sqrt(r(stats["var"]) + 1e-5) + r(p["b"])
    np.testing.assert_allclose(m.ev(p, stats, x), want_eval, rtol=1e-12)


def test_batch_norm_gradients():
    body = "fn loss(p, x, r) = sum(nn.batch_norm_train(p, {mean: zeros([3]), var: ones([3])}, x).0 * r)"
    check_grads(body, "loss", {"g": normal(3), "b": normal(3)}, normal(4, 3, 2, 2), normal(4, 3, 2, 2))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_exact_and_tanh(dtype):
    m = nn_program("fn f(x) = (nn.gelu(x), nn.gelu_tanh(x))")
    x = np.array([-np.inf, -40.0, -3.0, -1.0, 0.0, 0.5, 2.0, 30.0, np.inf], dtype)
    exact, approx = m.f(x)
    assert exact.dtype == approx.dtype == dtype
    xf = x.astype(np.float64)
    with np.errstate(invalid="ignore"):
        want_tanh = 0.5 * xf * (1 + np.tanh(math.sqrt(2 / math.pi) * (xf + 0.044715 * xf**3)))
        want_exact = gelu_ref(xf)
    want_exact[0] = want_tanh[0] = np.nan  # -inf * 0, as the formula gives
    tol = 1e-6 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(exact, want_exact, rtol=tol, atol=tol)
    np.testing.assert_allclose(approx, want_tanh, rtol=tol, atol=tol)


def test_gelu_gradients_are_finite_far_out():
    m = nn_program("fn g(x) = (map(grad(nn.gelu), x), map(grad(nn.gelu_tanh), x))")
    x = np.array([-1e300, -1e10, -50.0, 50.0, 1e10, 1e300])
    ge, gt = m.g(x)
    np.testing.assert_array_equal(ge, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(gt, [0, 0, 0, 1, 1, 1])
    check_grads("fn loss(x) = sum(nn.gelu(x) + nn.gelu_tanh(x))", "loss", np.array([-2.0, -0.3, 0.0, 0.7, 3.0]))


def test_dropout():
    m = nn_program("fn f(x, rate) = (nn.dropout(key(3), x, rate), uniform(key(3), shape(x)))")
    x = normal(4, 50)
    y, u = m.f(x, 0.0)
    np.testing.assert_array_equal(y, x)  # rate 0: the identity
    y, u = m.f(x, 0.3)
    np.testing.assert_allclose(y, np.where(u >= 0.3, x / 0.7, 0.0), rtol=1e-15)
    assert 0.5 < np.mean(y != 0) < 0.9
    y, _ = m.f(x, 1.0)
    np.testing.assert_array_equal(y, np.zeros_like(x))  # rate 1: everything dropped, no NaN
    y32, _ = m.f(x.astype(np.float32), np.array(0.5, np.float32))
    assert y32.dtype == np.float32
    check_grads("fn loss(x, r) = sum(nn.dropout(key(5), x, 0.5) * r)", "loss", normal(3, 4), normal(3, 4))
    g = nn_program("fn g(x) = grad(fn(y) => sum(nn.dropout(key(5), y, 1.0)))(x)").g(normal(3))
    np.testing.assert_array_equal(g, np.zeros(3))


def test_embedding_and_dense_batched():
    m = nn_program("fn f(t, ids, p, x) = (nn.embedding(t, ids), nn.dense(p, x), nn.dense(p, x[0]))")
    t, ids = normal(5, 3), np.array([[4, 0], [-1, 2]])
    p, x = {"w": normal(2, 3), "b": normal(2)}, normal(4, 3)
    e, y, y0 = m.f(t, ids, p, x)
    np.testing.assert_array_equal(e, t[ids])
    np.testing.assert_allclose(y, x @ p["w"].T + p["b"], rtol=1e-14)
    np.testing.assert_allclose(y0, y[0], rtol=1e-14)
    check_grads("fn loss(t, r) = sum(nn.embedding(t, [[4, 0], [4, 2]]) * r)", "loss", t, normal(2, 2, 3))


# --- recurrent layers ----------------------------------------------------------------------------


def lstm_params(n_in, n):
    return {"wi": normal(4 * n, n_in), "wh": normal(4 * n, n), "b": normal(4 * n)}


def gru_params(n_in, n):
    return {"wi": normal(3 * n, n_in), "wh": normal(3 * n, n), "bi": normal(3 * n), "bh": normal(3 * n)}


@pytest.mark.parametrize("batch", [1, 3])
def test_lstm_and_gru_over_a_sequence(batch):
    m = nn_program(
        "fn l(p, s, xs) = nn.lstm(p, s, xs)\nfn g(p, h, xs) = nn.gru(p, h, xs)\nfn c(p, s, x) = nn.lstm_cell(p, s, x)"
    )
    xs, h0, c0 = normal(4, batch, 3), normal(batch, 2), normal(batch, 2)
    lp, gp = lstm_params(3, 2), gru_params(3, 2)
    (h, c), hs = m.l(lp, (h0, c0), xs)
    wh, wc, whs = h0, c0, []
    for x in xs:
        wh, wc = lstm_cell_ref(lp, wh, wc, x)
        whs.append(wh)
    np.testing.assert_allclose(hs, np.stack(whs), rtol=1e-12)
    np.testing.assert_allclose((h, c), (wh, wc), rtol=1e-12)
    hv, cv = m.c(lp, (h0[0], c0[0]), xs[0, 0])  # a single (unbatched) step
    np.testing.assert_allclose((hv, cv), [a[0] for a in lstm_cell_ref(lp, h0, c0, xs[0])], rtol=1e-12)
    last, hs = m.g(gp, h0, xs)
    wh, whs = h0, []
    for x in xs:
        wh = gru_cell_ref(gp, wh, x)
        whs.append(wh)
    np.testing.assert_allclose(hs, np.stack(whs), rtol=1e-12)
    np.testing.assert_allclose(last, wh, rtol=1e-12)


def test_recurrent_gradients():
    xs, r = normal(3, 2, 3), normal(3, 2, 2)
    check_grads(
        "fn loss(p, h, c, xs, r) = sum(nn.lstm(p, (h, c), xs).1 * r)",
        "loss",
        lstm_params(3, 2),
        normal(2, 2),
        normal(2, 2),
        xs,
        r,
    )
    check_grads("fn loss(p, h, xs, r) = sum(nn.gru(p, h, xs).1 * r)", "loss", gru_params(3, 2), normal(2, 2), xs, r)


# --- attention and the transformer block ---------------------------------------------------------

CAUSAL = np.tril(np.ones((4, 4), bool))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_multi_head_attention(heads, dtype):
    m = nn_program(f"fn f(p, x, mask) = nn.multi_head_attention(p, x, mask, {heads})")
    p, x = attention_params(4, dtype), normal(2, 4, 4, dtype=dtype)
    y = m.f(p, x, CAUSAL)
    assert y.dtype == dtype
    want = attention_ref({k: v.astype(float) for k, v in p.items()}, x.astype(float), CAUSAL, heads)
    np.testing.assert_allclose(y, want, rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-5)


def test_masked_softmax_derivatives():
    """Its derivative is written out from its output (custom_vjp): checked against finite
    differences with a mask broadcast over the rows and a row of s with no true position, to
    second order, and in forward mode."""
    mask = np.array([True, False, True, True, True])  # one mask for every row of s
    s, r = normal(3, 5), normal(3, 5)
    check_grads("fn loss(s, r, mask) = sum(nn.masked_softmax(s, mask) * r)", "loss", s, r, mask)
    rows = np.ones((3, 5), bool)
    rows[1] = False
    check_grads("fn loss(s, r, mask) = sum(nn.masked_softmax(s, mask) * r)", "loss", s, r, rows)
    check_grads("fn g(s, r, mask) = sum(grad(fn(q) => sum(nn.masked_softmax(q, mask) * r))(s) * r)", "g", s, r, mask)
    m = nn_program(
        "fn loss(s, r, mask) = sum(nn.masked_softmax(s, mask) * r)\n"
        "fn tangent(s, r, mask, v) = jvp(fn(q) => loss(q, r, mask), (s,), (v,)).1\n"
    )
    v = normal(3, 5)
    g = diffc.grad(m.loss)(s, r, rows)
    assert np.all(g[1] == 0.0)  # (no position to move)
    np.testing.assert_allclose(m.tangent(s, r, rows, v), np.sum(g * v), rtol=1e-12)
    # over rows (attention's heads), the map's forward tapes the output only: it taped the
    # exponentials, the sums and where they are positive too
    m = nn_program("fn loss(s, r, mask) = sum(map(fn(q) => nn.masked_softmax(q, mask), s) * r)")
    types = (TensorType(f64, (3, 5)), TensorType(f64, (3, 5)), TensorType(boolean, (5,)))
    prog, _ = to_ir(m.ast, "loss", types, transform=("grad", (0,), True))
    (forward,) = [e for e in all_eqns(prog.main.body) if e.prim.name == "map"]
    assert [o.type for o in forward.outs] == [TensorType(f64, (3, 5))]  # (the loss reads the rows themselves)


def test_fully_masked_rows_give_no_nan():
    mask = CAUSAL.copy()
    mask[1] = False  # position 1 may attend to nothing
    m = nn_program("fn f(p, x, mask) = nn.multi_head_attention(p, x, mask, 2)")
    p, x = attention_params(4), normal(1, 4, 4)
    y = m.f(p, x, mask)
    np.testing.assert_allclose(y, attention_ref(p, x, mask, 2), rtol=1e-12)
    np.testing.assert_allclose(y[0, 1], p["bo"], rtol=1e-15)
    body = "fn loss(p, x, r, mask) = sum(nn.multi_head_attention(p, x, mask, 2) * r)"
    check_grads(body, "loss", p, x, normal(1, 4, 4), mask)
    nothing = np.zeros((4, 4), bool)
    g = nn_program("fn g(p, x, mask) = grad(fn(q) => sum(nn.multi_head_attention(q, x, mask, 2)))(p)").g(p, x, nothing)
    assert all(np.all(np.isfinite(v)) for v in g.values())


def test_transformer_encoder_is_pre_ln():
    m = nn_program(
        "fn f(p, x, mask) = nn.transformer_encoder(p, x, mask, 2)\n"
        "fn init() = nn.transformer_encoder_init(key(1), 4, 8)"
    )
    p, x = m.init(), normal(2, 4, 4)
    y = m.f(p, x, CAUSAL)
    ln = lambda q, v: layer_norm_ref(q["g"], q["b"], v)  # noqa: E731
    a = x + attention_ref(p["attn"], ln(p["ln1"], x), CAUSAL, 2)
    h = gelu_ref(ln(p["ln2"], a) @ p["ff1"]["w"].T + p["ff1"]["b"])
    np.testing.assert_allclose(y, a + h @ p["ff2"]["w"].T + p["ff2"]["b"], rtol=1e-10, atol=1e-12)
    check_grads(
        "fn loss(p, x, r, mask) = sum(nn.transformer_encoder(p, x, mask, 2) * r)", "loss", p, x, normal(2, 4, 4), CAUSAL
    )


# --- losses ----------------------------------------------------------------------------------------


def cross_entropy_ref(logits, labels, smoothing):
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    picked = logits[np.arange(len(labels)), labels]
    return np.mean(lse - (1 - smoothing) * picked - smoothing * logits.mean(-1))


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("batch", [1, 5])
def test_cross_entropy_batch(batch, smoothing):
    m = nn_program("fn f(z, y, s) = nn.cross_entropy_batch(z, y, s)")
    z, y = normal(batch, 4), RNG.integers(0, 4, batch)
    np.testing.assert_allclose(m.f(z, y, smoothing), cross_entropy_ref(z, y, smoothing), rtol=1e-12)
    check_grads("fn loss(z, y, s) = nn.cross_entropy_batch(z, y, s)", "loss", z, y, smoothing)


def test_cross_entropy_batch_edges():
    m = nn_program("fn f(z, y, s) = value_and_grad(nn.cross_entropy_batch)(z, y, s)")
    z = np.array([[0.0, -np.inf, 1.0], [2.0, 2.0, 2.0]])
    v, g = m.f(z, np.array([2, 1]), 0.0)  # a -inf logit off the label, ties
    np.testing.assert_allclose(v, np.mean([np.log1p(np.exp(-1.0)), np.log(3.0)]), rtol=1e-14)
    assert np.all(np.isfinite(g))
    v32, g32 = m.f(z.astype(np.float32), np.array([2, 1]), np.array(0.0, np.float32))
    assert g32.dtype == np.float32 and abs(v32 - v) < 1e-6
    bad = nn_program("fn f(z, y) = nn.cross_entropy_batch(z, y, 0.0)")
    with pytest.raises(diffc.DiffcError, match="out of bounds"):
        bad.f(z, np.array([2, 3]))


def test_cross_entropy_batch_gradient_builds_no_one_hot():
    """The label's logit is read from the whole array, so its cotangent is scattered into the
    softmax's gradient (one buffer): no loop stacks one-hot rows of the logits' shape."""
    m = nn_program("fn loss(z, y) = nn.cross_entropy_batch(z, y, 0.0)")
    types = (TensorType(f64, (6, 5)), TensorType(i64, (6,)))
    prog, _ = to_ir(m.ast, "loss", types, transform=("grad", 0, False))
    scans = [e for e in all_eqns(prog.main.body) if e.prim.name == "scan"]
    assert scans and all(e.params["num_carry"] == 1 for e in scans)  # accumulating, not stacking
    z, y = normal(6, 5), RNG.integers(0, 5, 6)
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    want[np.arange(6), y] -= 1.0
    np.testing.assert_allclose(diffc.grad(m.loss)(z, y), want / 6, rtol=1e-12, atol=1e-15)


def test_cross_entropy_batch_reads_the_logits_once_for_max_and_mean():
    """The max that shifts each row and the mean that label smoothing takes (run whatever the
    smoothing) reduce the same rows: they are lowered together, in one walk of the logits."""
    m = nn_program("fn loss(z, y, s) = nn.cross_entropy_batch(z, y, s)")
    types = (TensorType(f64, (6, 5)), TensorType(i64, (6,)), TensorType(f64, ()))
    for transform in ((), ("grad", 0, True)):
        prog, _ = to_ir(m.ast, "loss", types, transform=transform)
        z = prog.main.body.params[0]
        groups = [[e.prim.name for e in g] for g in siblings(prog.main.body).values() if g[0].inputs[0] is z]
        assert groups == [["reduce_max", "reduce_sum"]]


def test_zero_of_has_no_derivative_to_build():
    """zero_of(x), a constant, sends x no cotangent: no zero array of x's shape is padded from
    the empty slice it sums (a full pass in every loss that uses it)."""
    m = nn_program("fn loss(x) = sum(where(x > 0.0, x, nn.zero_of(x)))")
    prog, _ = to_ir(m.ast, "loss", (TensorType(f64, (6, 5)),), transform=("grad", 0, False))
    assert "pad" not in {e.prim.name for e in all_eqns(prog.main.body)}
    x = normal(6, 5)
    np.testing.assert_array_equal(diffc.grad(m.loss)(x), (x > 0).astype(float))


def test_binary_cross_entropy_and_mse():
    m = nn_program("fn f(z, y) = (nn.binary_cross_entropy(z, y), nn.mse(z, y))")
    z = np.array([[-800.0, -1.0, 0.0], [0.5, 3.0, 800.0]])
    y = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    bce, mse = m.f(z, y)
    want = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    np.testing.assert_allclose(bce, want, rtol=1e-14)
    np.testing.assert_allclose(mse, np.mean((z - y) ** 2), rtol=1e-14)
    check_grads(
        "fn loss(z, y) = nn.binary_cross_entropy(z, y)",
        "loss",
        normal(2, 3),
        np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.3]]),
    )


# --- initialisers and mistakes ---------------------------------------------------------------------


def test_initialisers_have_the_documented_shapes():
    m = nn_program(
        "fn f() = (nn.conv2d_init(key(0), 3, 8, 5, 3), nn.lstm_init(key(1), 3, 4), nn.gru_init(key(2), 3, 4),"
        " nn.batch_norm_init(6), nn.embedding_init(key(3), 10, 4), nn.multi_head_attention_init(key(4), 8))"
    )
    conv, lstm, gru, (bn, stats), emb, att = m.f()
    assert conv["w"].shape == (8, 3, 5, 3) and conv["b"].shape == (8,)
    assert 0.5 < conv["w"].std() * math.sqrt(3 * 5 * 3) < 1.5
    assert lstm["wi"].shape == (16, 3) and lstm["wh"].shape == (16, 4) and lstm["b"].shape == (16,)
    assert np.all(np.abs(lstm["wh"]) <= 0.5)
    assert gru["wi"].shape == (12, 3) and gru["bh"].shape == (12,)
    assert bn["g"].shape == stats["var"].shape == (6,) and emb.shape == (10, 4) and att["wo"].shape == (8, 8)


@pytest.mark.parametrize(
    "call,message",
    [
        ("nn.conv2d(nn.conv2d_init(key(0), 3, 4, 3, 3), zeros([1, 2, 8, 8]), 1, 0, 1)", "the channels of x"),
        ("nn.conv2d(nn.conv2d_init(key(0), 2, 4, 3, 3), zeros([1, 2, 8, 8]), 0, 0, 1)", "must be at least 1"),
        ("nn.conv2d(nn.conv2d_init(key(0), 2, 4, 3, 3), zeros([1, 2, 8, 8]), 1, -1, 1)", "must not be negative"),
        ("nn.conv2d(nn.conv2d_init(key(0), 2, 4, 3, 3), zeros([1, 2, 8, 8]), 1, 0, 0)", "must be at least 1"),
        ("nn.conv2d(nn.conv2d_init(key(0), 2, 4, 5, 5), zeros([1, 2, 4, 4]), 1, 0, 1)", "larger than the padded input"),
        ("nn.max_pool2d(zeros([1, 2, 3, 3]), 4, 4)", "larger than the padded input"),
        ("nn.avg_pool2d(zeros([1, 2, 3, 3]), 2, 0)", "must be at least 1"),
        (
            "nn.multi_head_attention(nn.multi_head_attention_init(key(0), 6), zeros([1, 2, 6]),"
            " [[true, true], [true, true]], 4)",
            "heads must divide",
        ),
    ],
)
def test_bad_static_arguments_are_located_at_the_users_call(call, message):
    source = f"import nn\nfn main() = {call}\n"
    with pytest.raises(diffc.DiffcError, match=message) as e:
        diffc.compile(source, "user.dfl").main()
    (kind, span), *_ = e.value.call_sites
    assert kind == "called" and (span.line, span.col) == (2, 13)


def test_an_empty_batch_gives_empty_results_and_zero_gradients():
    m = nn_program(
        "fn c(p, x) = value_and_grad(fn(q) => sum(nn.conv2d(q, x, 1, 1, 1)))(p)\n"
        "fn rest(g, x, img) = (nn.layer_norm(g, x), nn.max_pool2d(img, 2, 2), nn.avg_pool2d(img, 2, 1))"
    )
    p = {"w": normal(3, 2, 3, 3), "b": normal(3)}
    total, g = m.c(p, np.zeros((0, 2, 5, 5)))
    assert total == 0.0 and not np.any(g["w"]) and not np.any(g["b"])
    ln, mx, avg = m.rest({"g": np.ones(4), "b": np.zeros(4)}, np.zeros((0, 4)), np.zeros((0, 3, 4, 4)))
    assert ln.shape == (0, 4) and mx.shape == (0, 3, 2, 2) and avg.shape == (0, 3, 3, 3)

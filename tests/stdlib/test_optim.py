"""stdlib/optim.dfl against NumPy reimplementations of torch.optim's updates (three steps on a
small record, in f64 and f32, the dtype of parameters and state kept), its schedules and
clip_by_global_norm against their formulas, and training runs that converge."""

from __future__ import annotations

import numpy as np
import pytest

import diffc
from diffc.errors import ShapeError

SRC = """
import optim

fn three(step, init, p, gs) {
    let s = init(p);
    let (p, s) = step(p, gs.0, s);
    let (p, s) = step(p, gs.1, s);
    step(p, gs.2, s)
}

fn sgd(p, gs) = three(fn(p, g, s) => optim.sgd(p, g, s, 0.1), optim.sgd_init, p, gs)
fn momentum(p, gs) = three(fn(p, g, s) => optim.momentum(p, g, s, 0.1, 0.9), optim.momentum_init, p, gs)
fn nesterov(p, gs) = three(fn(p, g, s) => optim.nesterov(p, g, s, 0.1, 0.9), optim.nesterov_init, p, gs)
fn adam(p, gs) = three(fn(p, g, s) => optim.adam(p, g, s, 0.01, 0.9, 0.999, 1e-8), optim.adam_init, p, gs)
fn adamw(p, gs) = three(fn(p, g, s) => optim.adamw(p, g, s, 0.01, 0.9, 0.999, 1e-8, 0.1), optim.adamw_init, p, gs)
fn rmsprop(p, gs) = three(fn(p, g, s) => optim.rmsprop(p, g, s, 0.01, 0.99, 1e-8), optim.rmsprop_init, p, gs)
fn adagrad(p, gs) = three(fn(p, g, s) => optim.adagrad(p, g, s, 0.1, 1e-10), optim.adagrad_init, p, gs)

fn global_norm(g) = optim.global_norm(g)
fn clip(g) = optim.clip_by_global_norm(g, 1.0)
fn clip_sum(g) = sum(clip(g).a * [1.0, 2.0])

fn schedules(t) = (optim.constant(0.1, t), optim.step_decay(0.1, t, 3, 0.5), optim.exponential_decay(0.1, t, 4, 0.5),
                   optim.cosine_decay(0.1, t, 10, 0.1), optim.linear_warmup(0.1, t, 5))

fn quadratic(p) = sum((p.w - [1.0, -2.0, 3.0]) ** 2) + sum((p.m - [[0.5, 0.0], [0.0, -0.5]]) ** 2)

fn minimise(step, init, p, n) {
    let (p, s) = iterate(fn(ps) => step(ps.0, grad(quadratic)(ps.0), ps.1), (p, init(p)), n);
    quadratic(p)
}

fn quad_sgd(p) = minimise(fn(p, g, s) => optim.sgd(p, g, s, 0.1), optim.sgd_init, p, 200)
fn quad_momentum(p) = minimise(fn(p, g, s) => optim.momentum(p, g, s, 0.05, 0.9), optim.momentum_init, p, 200)
fn quad_nesterov(p) = minimise(fn(p, g, s) => optim.nesterov(p, g, s, 0.05, 0.9), optim.nesterov_init, p, 200)
fn quad_adam(p) = minimise(fn(p, g, s) => optim.adam(p, g, s, 0.05, 0.9, 0.999, 1e-8), optim.adam_init, p, 600)
fn quad_rmsprop(p) = minimise(fn(p, g, s) => optim.rmsprop(p, g, s, 0.01, 0.99, 1e-8), optim.rmsprop_init, p, 600)
fn quad_adagrad(p) = minimise(fn(p, g, s) => optim.adagrad(p, g, s, 0.5, 1e-10), optim.adagrad_init, p, 600)

# Linear regression y = x @ w + b by AdamW with warmup then cosine decay and clipping, in one fold.
fn mse(p, xs, ys) = mean((xs @ p.w + p.b - ys) ** 2)
fn regress(p, xs, ys) {
    let step = fn(ps, t) {
        let lr = optim.linear_warmup(1.0, t, 20) * optim.cosine_decay(0.1, t, 400, 0.01);
        let g = optim.clip_by_global_norm(grad(mse)(ps.0, xs, ys), 1.0);
        optim.adamw(ps.0, g, ps.1, lr, 0.9, 0.999, 1e-8, 0.0)
    };
    fold(step, (p, optim.adamw_init(p)), arange(400)).0
}
"""


@pytest.fixture(scope="module")
def mod():
    return diffc.compile(SRC)


def tmap(f, *trees):
    return {k: f(*(t[k] for t in trees)) for k in trees[0]}


def ref_sgd(p, gs):
    for g in gs:
        p = tmap(lambda w, d: w - 0.1 * d, p, g)
    return p, ()


def ref_momentum(p, gs, nesterov=False):
    v = tmap(np.zeros_like, p)
    for g in gs:
        v = tmap(lambda v, d: 0.9 * v + d, v, g)
        if nesterov:
            p = tmap(lambda w, d, v: w - 0.1 * (d + 0.9 * v), p, g, v)
        else:
            p = tmap(lambda w, v: w - 0.1 * v, p, v)
    return p, {"v": v}


def ref_adamw(p, gs, lr=0.01, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    """torch.optim.AdamW: decay first, then the Adam step with bias-corrected moments."""
    m, v = tmap(np.zeros_like, p), tmap(np.zeros_like, p)
    for t, g in enumerate(gs, 1):
        m = tmap(lambda m, d: b1 * m + (1 - b1) * d, m, g)
        v = tmap(lambda v, d: b2 * v + (1 - b2) * d * d, v, g)
        p = tmap(lambda w, m, v: w * (1 - lr * wd) - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps), p, m, v)
    return p, {"m": m, "v": v, "t": len(gs)}


def ref_rmsprop(p, gs):
    v = tmap(np.zeros_like, p)
    for g in gs:
        v = tmap(lambda v, d: 0.99 * v + 0.01 * d * d, v, g)
        p = tmap(lambda w, d, v: w - 0.01 * d / (np.sqrt(v) + 1e-8), p, g, v)
    return p, {"v": v}


def ref_adagrad(p, gs):
    a = tmap(np.zeros_like, p)
    for g in gs:
        a = tmap(lambda a, d: a + d * d, a, g)
        p = tmap(lambda w, d, a: w - 0.1 * d / (np.sqrt(a) + 1e-10), p, g, a)
    return p, {"a": a}


REFERENCES = {
    "sgd": ref_sgd,
    "momentum": ref_momentum,
    "nesterov": lambda p, gs: ref_momentum(p, gs, nesterov=True),
    "adam": ref_adamw,
    "adamw": lambda p, gs: ref_adamw(p, gs, wd=0.1),
    "rmsprop": ref_rmsprop,
    "adagrad": ref_adagrad,
}


def problem(dtype):
    rng = np.random.default_rng(11)
    p = {"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3)}
    gs = [{"w": rng.normal(size=(2, 3)), "b": rng.normal(size=3)} for _ in range(3)]
    gs[1]["b"][0] = 0.0  # a zero gradient: the adaptive steps must stay finite
    cast = lambda t: tmap(lambda x: x.astype(dtype), t)  # noqa: E731
    return cast(p), [cast(g) for g in gs]


def leaves(tree):
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in leaves(tree[k])]
    if isinstance(tree, tuple):
        return [x for t in tree for x in leaves(t)]
    return [tree]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_three_steps_match_torch_formulas(mod, name, dtype):
    p, gs = problem(dtype)
    got_p, got_s = getattr(mod, name)(p, tuple(gs))
    ref_p, ref_s = REFERENCES[name](tmap(lambda x: x.astype(np.float64), p), gs)
    tol = 1e-12 if dtype is np.float64 else 2e-5
    for k in p:
        assert got_p[k].dtype == dtype
        np.testing.assert_allclose(got_p[k], ref_p[k], rtol=tol, atol=tol)
    if isinstance(ref_s, dict) and "t" in ref_s:
        assert got_s["t"] == ref_s.pop("t")
        got_s = {k: v for k, v in got_s.items() if k != "t"}
    assert len(leaves(got_s)) == len(leaves(ref_s))
    for got, ref in zip(leaves(got_s), leaves(ref_s)):
        assert got.dtype == dtype  # the state is in the parameters' dtype
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_steps_from_python_keep_f32_with_f32_hyper_parameters():
    m = diffc.compile(
        "import optim\nfn init(p) = optim.adam_init(p)\n"
        "fn step(p, g, s, lr) = optim.adam(p, g, s, lr, 0.9, 0.999, 1e-8)\n"
    )
    p = {"w": np.ones(3, np.float32)}
    s = m.init(p)
    for _ in range(2):
        p, s = m.step(p, {"w": np.full(3, 0.5, np.float32)}, s, np.float32(0.1))
    assert p["w"].dtype == s["m"]["w"].dtype == s["v"]["w"].dtype == np.float32 and s["t"] == 2
    np.testing.assert_allclose(p["w"], 0.8, rtol=1e-6)  # Adam's first steps move by lr each
    # a Python float next to f32 arrays is f32, as a literal is; a NumPy float64 promotes
    assert m.step(p, {"w": np.ones(3, np.float32)}, s, 0.1)[0]["w"].dtype == np.float32
    assert m.step(p, {"w": np.ones(3, np.float32)}, s, np.float64(0.1))[0]["w"].dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clip_by_global_norm(mod, dtype):
    g = {"a": np.array([3.0, 0.0], dtype), "b": (np.array([[4.0]], dtype), np.zeros(0, dtype))}
    assert mod.global_norm(g) == 5.0
    clipped = mod.clip(g)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"][0], [[0.8]], rtol=1e-6)
    assert clipped["a"].dtype == dtype and clipped["b"][1].shape == (0,)
    small = {"a": np.array([0.3, 0.0], dtype), "b": (np.array([[0.4]], dtype), np.zeros(0, dtype))}
    np.testing.assert_array_equal(mod.clip(small)["a"], small["a"])  # under the norm: unchanged
    zero = tmap(lambda x: x * 0 if isinstance(x, np.ndarray) else x, {"a": small["a"]})
    np.testing.assert_array_equal(mod.clip({"a": zero["a"], "b": small["b"]})["a"], [0.0, 0.0])


def test_clipping_derivatives(mod):
    # the identity under the norm, finite at a zero gradient (global_norm's kink: gradient 0)
    zero = {"a": np.zeros(2), "b": (np.zeros((1, 1)), np.zeros(0))}
    np.testing.assert_array_equal(diffc.grad(mod.clip_sum)(zero)["a"], [1.0, 2.0])
    np.testing.assert_array_equal(diffc.grad(mod.global_norm)(zero)["a"], [0.0, 0.0])
    g = {"a": np.array([3.0, 4.0]), "b": (np.zeros((1, 1)), np.zeros(0))}
    # above the norm: d/dg of g / |g| . c = (c - (g.c) g / |g|^2) / |g|
    c = np.array([1.0, 2.0])
    want = (c - (g["a"] @ c) * g["a"] / 25) / 5
    np.testing.assert_allclose(diffc.grad(mod.clip_sum)(g)["a"], want, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_a_gradient_shaped_unlike_its_parameter_is_an_error(name):
    # [1] - lr * [2] would broadcast: the parameter would silently become a vector of 2
    hyper = {
        "sgd": "0.1",
        "momentum": "0.1, 0.9",
        "nesterov": "0.1, 0.9",
        "adam": "0.1, 0.9, 0.999, 1e-8",
        "adamw": "0.1, 0.9, 0.999, 1e-8, 0.0",
        "rmsprop": "0.1, 0.9, 1e-8",
        "adagrad": "0.1, 1e-10",
    }[name]
    src = f"import optim\nfn main(p, g) = optim.{name}(p, g, optim.{name}_init(p), {hyper})\n"
    with pytest.raises(ShapeError, match=r"cannot stack arrays of different shapes: f64\[1\], f64\[2\]") as e:
        diffc.compile(src).main({"w": np.ones(1), "b": np.ones(2)}, {"w": np.ones(2), "b": np.ones(2)})
    assert "called from <string>:2:" in str(e.value)


def test_schedules(mod):
    for t in range(0, 25):
        got = mod.schedules(t)
        c = 0.5 * (1 + np.cos(np.pi * min(t, 10) / 10))
        want = (0.1, 0.1 * 0.5 ** (t // 3), 0.1 * 0.5 ** (t / 4), 0.1 * (0.1 + 0.9 * c), 0.1 * min(t / 5, 1.0))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert mod.schedules(0)[3] == pytest.approx(0.1) and mod.schedules(10)[3] == pytest.approx(0.01)


def test_schedules_keep_a_float_steps_dtype(mod):
    got = mod.schedules(np.float32(7.0))
    want = (0.1, 0.1 * 0.5**2, 0.1 * 0.5 ** (7 / 4), 0.1 * (0.1 + 0.9 * 0.5 * (1 + np.cos(0.7 * np.pi))), 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    f32 = diffc.compile("import optim\nfn f(t, x) = x * optim.cosine_decay(0.1, t, 10, 0.1)\n")
    assert f32.f(np.float32(3.0), np.ones(1, np.float32)).dtype == np.float32  # an f64 would promote x


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_quadratic_converges(mod, name, dtype):
    p = {"w": np.zeros(3, dtype), "m": np.ones((2, 2), dtype)}
    start = 1 + 4 + 9 + 0.25 + 1 + 1 + 2.25
    assert getattr(mod, "quad_" + name)(p) < 1e-4 * start


def test_regression_converges(mod):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 3))
    w, b = np.array([1.5, -2.0, 0.5]), 0.3
    ys = xs @ w + b
    p = mod.regress({"w": np.zeros(3), "b": 0.0}, xs, ys)
    np.testing.assert_allclose(p["w"], w, atol=1e-3)
    assert abs(p["b"] - b) < 1e-3

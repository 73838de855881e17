"""stdlib/ds.dfl: the neural stack, queue and deque against a NumPy transcription of the
equations of Grefenstette et al. (2015) (lists grown one slot per step, sums written out),
the discrete cases (d, u in {0, 1}) against Python lists, f32 kept, and gradients and
tangents against finite differences."""

from __future__ import annotations

import numpy as np
import pytest

import diffc

SRC = """
import ds

fn stack_run(d, u, v) =
    scan(fn(st, x) => ds.stack_step(st, x.d, x.u, x.v), ds.stack_init(len(d), v[0]), {d: d, u: u, v: v})
fn queue_run(d, u, v) =
    scan(fn(st, x) => ds.queue_step(st, x.d, x.u, x.v), ds.queue_init(len(d), v[0]), {d: d, u: u, v: v})
fn deque_run(d, u, v) {
    let step = fn(st, x) => ds.deque_step(st, x.d[0], x.d[1], x.u[0], x.u[1], x.v[0], x.v[1]);
    scan(step, ds.deque_init(len(d), v[0, 0]), {d: d, u: u, v: v})
}

fn stack_loss(d, u, v, c) = sum(stack_run(d, u, v).1 * c)
fn queue_loss(d, u, v, c) = sum(queue_run(d, u, v).1 * c)
fn deque_loss(d, u, v, c) {
    let rs = deque_run(d, u, v).1;
    sum(rs.0 * c) + sum(rs.1 * c * c)
}

# The separate operations, composed by hand: push two, pop some, read.
fn overfull(v) = ds.stack_push(ds.stack_push(ds.stack_init(1, v[0]), 0.5, v[0]), 1.0, v[1])

fn ops(v) {
    let st = ds.stack_push(ds.stack_push(ds.stack_init(3, v[0]), 1.0, v[0]), 0.6, v[1]);
    let q = ds.queue_push(ds.queue_push(ds.queue_init(3, v[0]), 1.0, v[0]), 0.6, v[1]);
    let dq = ds.deque_push_bottom(ds.deque_push_top(ds.deque_init(2, v[0]), 0.7, v[0]), 0.5, v[1]);
    (ds.stack_read(ds.stack_pop(st, 0.8)), ds.queue_read(ds.queue_pop(q, 0.3)),
     ds.deque_read_top(ds.deque_pop_bottom(dq, 0.9)), ds.deque_read_bottom(ds.deque_pop_top(dq, 0.2)))
}
"""


@pytest.fixture(scope="module")
def mod():
    return diffc.compile(SRC)


def weights(s, front):
    return np.array([min(s[i], max(0.0, 1.0 - front(s, i))) for i in range(len(s))])


def above(s, i):
    return sum(s[i + 1 :])


def below(s, i):
    return sum(s[:i])


def pop(s, u, front):
    return [max(0.0, s[i] - max(0.0, u - front(s, i))) for i in range(len(s))]


def read(s, vals, front, m):
    return weights(s, front) @ np.array(vals).reshape(len(vals), m) if vals else np.zeros(m)


def ref_run(d, u, v, front):
    """The paper's stack (front = above) or queue (front = below), step t: pop u_t from the
    strengths of t - 1, push v_t with strength d_t, read r_t."""
    s, vals, reads = [], [], []
    for dt, ut, vt in zip(d, u, v):
        s = pop(s, ut, front) + [dt]
        vals.append(vt)
        reads.append(read(s, vals, front, len(vt)))
    return np.array(reads), np.array(s)


def ref_deque(d, u, v):
    """The deque as ds.dfl documents it: the list runs from the bottom (0) to the top; pop from
    the top, then from the bottom, push on top, then at the bottom; read both ends."""
    s, vals, tops, bots = [], [], [], []
    for (dt, db), (ut, ub), (vt, vb) in zip(d, u, v):
        s = pop(pop(s, ut, above), ub, below)
        s, vals = [db] + s + [dt], [vb] + vals + [vt]
        tops.append(read(s, vals, above, len(vt)))
        bots.append(read(s, vals, below, len(vt)))
    return np.array(tops), np.array(bots), np.array(s)


def draws(seed, steps, m, deque=False):
    rng = np.random.default_rng(seed)
    shape = (steps, 2) if deque else (steps,)
    return rng.uniform(size=shape), rng.uniform(size=shape), rng.normal(size=shape + (m,))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind, front", [("stack", above), ("queue", below)])
def test_stack_and_queue_follow_the_paper(mod, kind, front, seed):
    d, u, v = draws(seed, 7, 3)
    st, rs = getattr(mod, kind + "_run")(d, u, v)
    want_r, want_s = ref_run(d, u, v, front)
    np.testing.assert_allclose(rs, want_r, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(st["s"], want_s, rtol=1e-12, atol=1e-14)
    assert st["n"] == 7
    np.testing.assert_array_equal(st["v"], v)


def test_paper_figure_example(mod):
    # Grefenstette et al. (2015), Figure 1: push v1 (d 0.8), then pop 0.1 and push v2 (d 0.5),
    # then pop 0.9 and push v3 (d 0.9): r = 0.8 v1, then 0.5 v1 + 0.5 v2, then 0.1 v1 + 0.9 v3.
    v = np.eye(3)
    st, rs = mod.stack_run(np.array([0.8, 0.5, 0.9]), np.array([0.0, 0.1, 0.9]), v)
    np.testing.assert_allclose(rs, [[0.8, 0, 0], [0.5, 0.5, 0], [0.1, 0, 0.9]], atol=1e-15)
    np.testing.assert_allclose(st["s"], [0.3, 0.0, 0.9], atol=1e-15)


@pytest.mark.parametrize("seed", [0, 1])
def test_deque(mod, seed):
    d, u, v = draws(seed, 5, 2, deque=True)
    st, (tops, bots) = mod.deque_run(d, u, v)
    want_top, want_bot, want_s = ref_deque(d, u, v)
    np.testing.assert_allclose(tops, want_top, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(bots, want_bot, rtol=1e-12, atol=1e-14)
    assert (st["bot"], st["top"]) == (-1, 10)  # 5 pushes at each end of 2 * 5 slots
    np.testing.assert_allclose(st["s"], want_s, rtol=1e-12, atol=1e-14)


def discrete_ops(seed, steps):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, steps).astype(float), rng.integers(0, 2, steps).astype(float)


@pytest.mark.parametrize("seed", range(4))
def test_discrete_stack_and_queue(mod, seed):
    d, u = discrete_ops(seed, 12)
    v = np.arange(12.0).reshape(12, 1) + 1
    for kind in ("stack", "queue"):
        items, reads = [], []
        for dt, ut, vt in zip(d, u, v[:, 0]):
            if ut == 1 and items:
                items.pop(-1 if kind == "stack" else 0)
            if dt == 1:
                items.append(vt)
            reads.append(0.0 if not items else items[-1] if kind == "stack" else items[0])
        _, rs = getattr(mod, kind + "_run")(d, u, v)
        np.testing.assert_array_equal(rs[:, 0], reads)


@pytest.mark.parametrize("seed", range(4))
def test_discrete_deque(mod, seed):
    rng = np.random.default_rng(seed)
    d, u = rng.integers(0, 2, (10, 2)).astype(float), rng.integers(0, 2, (10, 2)).astype(float)
    v = np.arange(40.0).reshape(10, 2, 2) + 1
    items, tops, bots = [], [], []
    for (dt, db), (ut, ub), (vt, vb) in zip(d, u, v):
        if ut == 1 and items:
            items.pop()
        if ub == 1 and items:
            items.pop(0)
        items = ([vb[0]] if db == 1 else []) + items + ([vt[0]] if dt == 1 else [])
        tops.append(items[-1] if items else 0.0)
        bots.append(items[0] if items else 0.0)
    _, (rt, rb) = mod.deque_run(d, u, v)
    np.testing.assert_array_equal(rt[:, 0], tops)
    np.testing.assert_array_equal(rb[:, 0], bots)


def test_empty_full_and_overfull_reads(mod):
    v = np.ones((3, 2))
    # popping an empty stack reads 0; strength above 1 in total reads at most weight 1
    _, rs = mod.stack_run(np.array([0.0, 1.0, 1.0]), np.array([1.0, 0.0, 0.0]), v)
    np.testing.assert_array_equal(rs, [[0, 0], [1, 1], [1, 1]])
    _, rs = mod.queue_run(np.array([0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0]), v)
    np.testing.assert_array_equal(rs, np.zeros((3, 2)))


def test_a_push_beyond_the_capacity_is_dropped(mod):
    st = mod.overfull(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert st["n"] == 2
    np.testing.assert_array_equal(st["s"], [0.5])
    np.testing.assert_array_equal(st["v"], [[1.0, 2.0]])


def test_separate_operations(mod):
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    s, q, top, bot = mod.ops(v)
    # stack [1 v0, 0.6 v1], pop 0.8: v1 gone, v0 left 0.8
    np.testing.assert_allclose(s, [0.8, 0.0], atol=1e-15)
    # queue [1 v0, 0.6 v1], pop 0.3 from the front: v0 0.7, then 0.3 of v1
    np.testing.assert_allclose(q, [0.7, 0.3], atol=1e-15)
    # deque bottom..top = [0.5 v1, 0.7 v0]: pop 0.9 from the bottom leaves 0.3 v0
    np.testing.assert_allclose(top, [0.3, 0.0], atol=1e-15)
    # pop 0.2 from the top leaves [0.5 v1, 0.5 v0]; read from the bottom
    np.testing.assert_allclose(bot, [0.5, 0.5], atol=1e-15)


@pytest.mark.parametrize("kind", ["stack", "queue", "deque"])
def test_f32_kept(mod, kind):
    d, u, v = draws(3, 4, 2, deque=kind == "deque")
    st, rs = getattr(mod, kind + "_run")(d.astype(np.float32), u.astype(np.float32), v.astype(np.float32))
    for x in (st["s"], st["v"]) + (rs if kind == "deque" else (rs,)):
        assert x.dtype == np.float32


def numeric_grad(f, args, i, eps=1e-6):
    x = args[i]
    g = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        hi, lo = [a.copy() for a in args], [a.copy() for a in args]
        hi[i][j] += eps
        lo[i][j] -= eps
        g[j] = (f(*hi) - f(*lo)) / (2 * eps)
    return g


@pytest.mark.parametrize("kind", ["stack", "queue", "deque"])
def test_gradients_match_finite_differences(mod, kind):
    d, u, v = draws(5, 4, 2, deque=kind == "deque")
    u = u * 0.6  # some pops leave strength: every branch of the max/min formulas is used
    c = np.random.default_rng(9).normal(size=v.shape[-1])
    loss = getattr(mod, kind + "_loss")
    args = [d, u, v, c]
    grads = diffc.grad(loss, argnums=(0, 1, 2))(*args)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, numeric_grad(loss, args, i), rtol=1e-6, atol=1e-8)
        assert np.all(np.isfinite(g))
    # forward mode along a random direction of every input agrees with the reverse mode
    rng = np.random.default_rng(1)
    dirs = [rng.normal(size=a.shape) for a in (d, u, v)]
    _, tangent = diffc.jvp(loss)(d, u, v, c, *dirs, np.zeros_like(c))
    assert tangent == pytest.approx(sum(np.sum(g * t) for g, t in zip(grads, dirs)), rel=1e-9)

"""stdlib/init.dfl: shapes from literal sizes, the bounds and variances of the draws (fixed keys,
so the statistics are fixed numbers checked against generous bounds), determinism, and
orthogonality to 1e-10 in f64."""

from __future__ import annotations

import numpy as np
import pytest

import diffc

SRC = """
import init

fn glorot_uniform(seed) = init.glorot_uniform(key(seed), 300, 200)
fn glorot_normal(seed) = init.glorot_normal(key(seed), 300, 200)
fn he_uniform(seed) = init.he_uniform(key(seed), 300, 200)
fn he_normal(seed) = init.he_normal(key(seed), 300, 200)
fn small(seed) = init.glorot_uniform(key(seed), 3, 2)
fn empty(seed) = init.he_normal(key(seed), 0, 4)
fn single(seed) = f32(init.he_uniform(key(seed), 1, 1))
fn orthogonal(seed) = (init.orthogonal(key(seed), 1), init.orthogonal(key(seed), 2),
                       init.orthogonal(key(seed), 17), init.orthogonal(key(seed), 64))
fn orthogonal_empty(seed) = init.orthogonal(key(seed), 0)
fn dense(seed) {
    let (k1, k2) = split(key(seed));
    {w1: init.he_normal(k1, 4, 8), w2: init.glorot_uniform(k2, 8, 1)}
}
"""

FAN_IN, FAN_OUT = 300, 200
# name: (variance, bound of |w| or None)
EXPECTED = {
    "glorot_uniform": (2 / (FAN_IN + FAN_OUT), np.sqrt(6 / (FAN_IN + FAN_OUT))),
    "glorot_normal": (2 / (FAN_IN + FAN_OUT), None),
    "he_uniform": (2 / FAN_IN, np.sqrt(6 / FAN_IN)),
    "he_normal": (2 / FAN_IN, None),
}


@pytest.fixture(scope="module")
def mod():
    return diffc.compile(SRC)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape_bounds_and_variance(mod, name):
    var, bound = EXPECTED[name]
    for seed in (0, 1, 123456789):
        w = getattr(mod, name)(seed)
        assert w.shape == (FAN_OUT, FAN_IN) and w.dtype == np.float64
        # 60000 draws: the sample mean and variance are within a few standard errors
        assert abs(w.mean()) < 5 * np.sqrt(var / w.size)
        assert abs(w.var() / var - 1) < 0.03
        if bound is not None:
            assert np.abs(w).max() <= bound
            assert np.abs(w).max() > 0.99 * bound  # the whole interval is used
            assert abs(np.mean(np.abs(w) < bound / 2) - 0.5) < 0.01  # uniform, not bell-shaped
        else:
            assert abs(np.mean(np.abs(w) < np.sqrt(var)) - 0.6827) < 0.01  # normal: 1 sigma


def test_fixed_keys_give_fixed_draws(mod):
    a, b, c = mod.small(5), mod.small(5), mod.small(6)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 3) and not np.array_equal(a, c)
    assert mod.empty(0).shape == (4, 0)
    one = mod.single(3)
    assert one.shape == (1, 1) and one.dtype == np.float32 and abs(one[0, 0]) <= np.sqrt(6)


def test_split_keys_per_layer(mod):
    p = mod.dense(0)
    assert p["w1"].shape == (8, 4) and p["w2"].shape == (1, 8)
    assert np.all(np.abs(p["w2"]) <= np.sqrt(6 / 9))


def test_orthogonal(mod):
    for seed in (0, 1, 99):
        for q in mod.orthogonal(seed):
            n = q.shape[0]
            assert q.shape == (n, n)
            np.testing.assert_allclose(q @ q.T, np.eye(n), rtol=0, atol=1e-10)
            np.testing.assert_allclose(q.T @ q, np.eye(n), rtol=0, atol=1e-10)
    assert mod.orthogonal_empty(0).shape == (0, 0)
    # Haar-distributed: the 1x1 case is +-1 with either sign, a fixed key a fixed matrix
    signs = {float(mod.orthogonal(seed)[0][0, 0]) for seed in range(16)}
    assert signs == {1.0, -1.0}
    np.testing.assert_array_equal(mod.orthogonal(7)[3], mod.orthogonal(7)[3])


def test_orthogonal_entries_spread_like_haar(mod):
    # Each entry of a Haar-random n x n orthogonal matrix has mean 0 and variance 1 / n.
    q = mod.orthogonal(2)[3]
    assert abs(q.mean()) < 5 / 64**1.5
    assert abs(q.var() * 64 - 1) < 0.05

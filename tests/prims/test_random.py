"""key / split / uniform / normal: counter-based (Threefry-2x64-20, as diffc/prims/random.py
documents), so every draw is a pure function of the key: compared here with an independent
NumPy/Python implementation of the same algorithm, and for the statistical properties."""

from __future__ import annotations

import numpy as np
import pytest
from support import reference as R
from support.native import ir_of, module, prim_names

import diffc

RNG = module("""
    fn keys(seed) = (key(seed), split(key(seed)), split(key(seed), 3))
    fn draws(seed) {
        let (k1, k2) = split(key(seed));
        (uniform(k1, [7]), normal(k2, [2, 3]), uniform(key(seed), [2, 2]))
    }
    fn big(seed) = (uniform(key(seed), [20000]), normal(key(seed), [20000]))
""")


@pytest.mark.parametrize("seed", [0, 1, 42, -5, 2**40 + 7])
def test_keys_and_draws_match_the_reference(seed):
    k, (a, b), three = RNG.keys(seed)
    np.testing.assert_array_equal(k, R.key(seed))
    ra, rb = R.split(R.key(seed))
    np.testing.assert_array_equal(a, ra)
    np.testing.assert_array_equal(b, rb)
    for got, want in zip(three, R.split(R.key(seed), 3)):
        np.testing.assert_array_equal(got, want)
    u, z, u2 = RNG.draws(seed)
    np.testing.assert_array_equal(u, R.uniform(ra, (7,)))
    np.testing.assert_allclose(z, R.normal(rb, (2, 3)), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(u2, R.uniform(R.key(seed), (2, 2)))


def test_the_seed_is_an_argument_not_a_constant():
    assert {"random_uniform", "random_normal", "random_bits"} <= prim_names(ir_of(RNG, "draws", 3))


def test_same_key_same_numbers_in_a_fresh_compile():
    again = diffc.compile("fn draws(seed) = uniform(split(key(seed)).0, [7])")
    np.testing.assert_array_equal(again.draws(11), RNG.draws(11)[0])


def test_different_keys_give_different_numbers():
    seen = {tuple(RNG.draws(s)[0]) for s in range(20)}
    assert len(seen) == 20
    u, z, _ = RNG.draws(5)
    assert len(set(u)) == len(u)


def test_distributions():
    u, z = RNG.big(123)
    assert u.dtype == np.float64 and z.dtype == np.float64
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    # each tenth of [0, 1) holds about a tenth of the draws (expected 2000 each, sd ~42)
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 2000) < 250), counts
    assert np.isfinite(z).all()
    assert abs(z.mean()) < 0.03 and abs(z.var() - 1.0) < 0.05
    assert 0.66 < np.mean(np.abs(z) < 1.0) < 0.70  # 68.3% within one standard deviation

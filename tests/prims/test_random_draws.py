"""randint, bernoulli, categorical, permutation and shuffle: each a pure function of its key
(compared with the Threefry reference where the bits are used directly), with the statistics
of its distribution checked at fixed keys (so deterministic), and the sizes 0 and 1."""

from __future__ import annotations

import numpy as np
import pytest
from support import reference as R

import diffc
from diffc.errors import DiffcError

BIG = 2**62  # randint(k, s, -BIG, BIG + 1) has a range of 2**63 + 1: half of all draws rejected

M = diffc.compile(f"""
    fn ints(seed) = randint(key(seed), [3, 4], -5, 7)
    fn many_ints(seed) = randint(key(seed), [60000], 0, 6)
    fn wide(seed) = randint(key(seed), [2000], -{BIG}, {BIG + 1})
    fn full_range(seed) = randint(key(seed), [5], -9223372036854775807 - 1, 9223372036854775807)
    fn coins(seed, p) = bernoulli(key(seed), p, [40000])
    fn coins_each(seed, p) = bernoulli(key(seed), p)
    fn draw(seed, logits) = categorical(key(seed), logits)
    fn draw0(seed, logits) = categorical(key(seed), logits, axis=0)
    fn perm(seed) = permutation(key(seed), 1000)
    fn perm_small(seed) = (permutation(key(seed), 0), permutation(key(seed), 1), permutation(key(seed), 5))
    fn shuf(seed, x) = shuffle(key(seed), x)
""")


def randint_reference(k, n, lo, hi):
    """Element c: the first word of block (c, t) for t = 0, 1, ... until it is at least
    2**64 mod (hi - lo), then lo + that word mod (hi - lo)."""
    k0, k1 = (int(v) & (2**64 - 1) for v in k)
    span = hi - lo
    out = []
    for c in range(n):
        t = 0
        while (x := R.threefry2x64(k0, k1, c, t)[0]) < 2**64 % span:
            t += 1
        out.append(lo + x % span)
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("seed", [0, 3, -7])
def test_randint_matches_the_reference(seed):
    got = M.ints(seed)
    assert got.shape == (3, 4) and got.dtype == np.int64
    np.testing.assert_array_equal(got.reshape(-1), randint_reference(R.key(seed), 12, -5, 7))
    wide = M.wide(seed)
    np.testing.assert_array_equal(wide, randint_reference(R.key(seed), 2000, -BIG, BIG + 1))
    assert wide.min() >= -BIG and wide.max() <= BIG
    np.testing.assert_array_equal(M.full_range(seed), randint_reference(R.key(seed), 5, -(2**63), 2**63 - 1))


def test_randint_is_uniform():
    x = M.many_ints(1)
    assert x.min() == 0 and x.max() == 5
    counts = np.bincount(x, minlength=6)  # 10000 each, sd ~91
    assert np.all(np.abs(counts - 10000) < 500), counts
    assert not np.array_equal(M.many_ints(1), M.many_ints(2))
    np.testing.assert_array_equal(M.many_ints(1), x)


def test_bernoulli():
    for p in (0.0, 0.1, 0.5, 0.9, 1.0):
        c = M.coins(4, p)
        assert c.dtype == np.bool_ and c.shape == (40000,)
        assert abs(c.mean() - p) < 0.01, (p, c.mean())
    assert not M.coins(4, -0.5).any() and M.coins(4, 1.5).all()
    np.testing.assert_array_equal(M.coins(4, 0.3), R.uniform(R.key(4), (40000,)) < 0.3)
    ps = np.array([0.0, 0.25, 1.0])
    each = M.coins_each(9, ps)
    np.testing.assert_array_equal(each, R.uniform(R.key(9), (3,)) < ps)


def test_categorical_frequencies_follow_softmax():
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    rows = np.broadcast_to(logits, (20000, 4)).copy()
    draws = M.draw(5, rows)
    assert draws.dtype == np.int64 and draws.shape == (20000,)
    freq = np.bincount(draws, minlength=4) / 20000  # sd at most ~0.0035
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    # a category of logit -inf is never drawn; one far larger than the others always is
    never = M.draw(6, np.broadcast_to(np.array([0.0, -np.inf, 0.0]), (5000, 3)).copy())
    assert not (never == 1).any()
    always = M.draw(6, np.broadcast_to(np.array([0.0, 50.0, 0.0]), (100, 3)).copy())
    assert (always == 1).all()
    cols = M.draw0(7, np.zeros((3, 1000)))
    assert cols.shape == (1000,) and set(np.unique(cols)) == {0, 1, 2}
    np.testing.assert_array_equal(M.draw(5, rows), draws)


def test_permutations():
    seen = set()
    for seed in range(5):
        p = M.perm(seed)
        assert p.dtype == np.int64
        np.testing.assert_array_equal(np.sort(p), np.arange(1000))
        seen.add(tuple(p))
        np.testing.assert_array_equal(M.perm(seed), p)  # determinism per key
    assert len(seen) == 5
    # each position is uniform over the values: the mean of p[0] over many keys is near (n-1)/2
    firsts = [M.perm_small(s)[2][0] for s in range(400)]
    assert abs(np.mean(firsts) - 2.0) < 0.25 and set(firsts) == {0, 1, 2, 3, 4}
    empty, one, _ = M.perm_small(0)
    assert empty.shape == (0,) and empty.dtype == np.int64
    np.testing.assert_array_equal(one, [0])
    # the order of the key's bits: permutation(k, n) is argsort of n bits of k
    np.testing.assert_array_equal(M.perm(3), np.argsort(_bits(3, 1000), kind="stable"))


def test_shuffle_permutes_rows():
    x = np.arange(24.0).reshape(6, 4)
    y = M.shuf(2, x)
    np.testing.assert_array_equal(y, x[np.argsort(_bits(2, 6), kind="stable")])
    np.testing.assert_array_equal(np.sort(y[:, 0]), x[:, 0])
    assert M.shuf(2, np.zeros((0, 3))).shape == (0, 3)
    np.testing.assert_array_equal(M.shuf(2, np.array([7.0])), [7.0])


def _bits(seed, n):
    return np.array([R._signed(x0) for x0, _ in R._blocks(R.key(seed), n)], dtype=np.int64)


@pytest.mark.parametrize(
    "src,message",
    [
        ("fn f() = randint(key(0), [3], 5, 5)", "`randint` needs low < high"),
        ("fn f(n) = randint(key(0), [3], 0, n[0])", "must be known at compile time"),
        ("fn f() = randint(key(0), [3], 0.5, 2)", "the low end of `randint` must be an integer"),
        ("fn f() = randint(1, [3], 0, 2)", "`randint` needs a key"),
        ("fn f() = bernoulli(key(0), 1, [3])", "the probability of `bernoulli` must be floats"),
        ("fn f() = bernoulli(key(0), ones([2]), [3])", "do not broadcast"),
        ("fn f() = categorical(key(0), ones([2, 3]), axis=2)", "axis 2 is out of range"),
        ("fn f() = categorical(key(0), ones([0]))", "empty axis"),
        ("fn f() = categorical(key(0), 1.0)", "needs an array of logits"),
        ("fn f() = permutation(key(0), -1)", "the length of `permutation` must be at least 0"),
        ("fn f() = shuffle(key(0), 2.0)", "permutes the rows of an array"),
    ],
)
def test_wrong_uses_are_located_errors(src, message):
    m = diffc.compile(src)
    with pytest.raises(DiffcError, match=message) as e:
        m.f(np.array([3])) if "f(n)" in src else m.f()  # (an int argument would be static)
    assert e.value.span is not None


def test_draws_of_shape_empty_are_scalars():
    """A draw of shape [] is element 0 of any longer draw from the key (it crashed the
    lowering, which stored into an array where a scalar is a register)."""
    m = diffc.compile("""
        fn f(seed) = (uniform(key(seed), shape(1.0)), normal(key(seed), shape(1.0)),
                      randint(key(seed), shape(1.0), -3, 9), bernoulli(key(seed), 0.5))
    """)
    u, z, i, b = m.f(8)
    k = R.key(8)
    assert u == R.uniform(k, (1,))[0] and z == R.normal(k, (1,))[0]
    assert i == randint_reference(k, 1, -3, 9)[0]
    assert b == (R.uniform(k, (1,))[0] < 0.5)

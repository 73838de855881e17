"""A loop nest that writes an array from arrays read by position (a copy into a slab of a
concat, a transpose, an elementwise op on arrays in memory) has no loop for an axis of 1 and
one loop for each run of adjacent axes that every array steps over as one (Note [Merged axes]
in lower/emit.py): the loops in the IR, and the values, the same bits as NumPy's wherever the
axes are merged or not (padding, slabs, transposes, broadcasts, empty arrays, NaN, -0, bools)."""

from __future__ import annotations

import numpy as np
import pytest
from lower.test_flat_loops import write_loops
from support.native import module

PAD = "import nn\nfn main(x) = nn.pad2d(x, 1)\n"

M = module("""
    import nn
    fn pad(x) = nn.pad2d(x, 1)
    fn slabs(a, b) = concat(a, b, a, axis=1)
    fn turned(a) = transpose(a, [0, 3, 1, 2])
    fn across(a, c) = a * c
    fn picked(m, a, b) = where(m, a, b)
""")


def test_a_copy_nests_only_the_axes_it_must(capsys, tmp_path):
    # x [8, 1, 3, 5]: each piece of a concat along axis 2 is a slab of 8 rows of 15 elements
    # (the axis of 1 gone, the last two merged): 2 loops, not 4 (28 loops for nn.pad2d before)
    x = np.ones((8, 1, 3, 5))
    assert write_loops(capsys, tmp_path, "fn main(a, b) = concat(a, b, axis=2)\n", a=x, b=x) == 2 * 2
    assert write_loops(capsys, tmp_path, PAD, x=x) == 14
    # a transpose steps over no two adjacent axes alike: a loop per axis, but the axis of 1
    assert write_loops(capsys, tmp_path, "fn main(a) = transpose(a, [0, 3, 1, 2])\n", a=x) == 3


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(8, 1, 3, 5), (2, 3, 1, 1), (1, 1, 1, 1), (0, 2, 3, 4), (3, 0, 1, 2)])
def test_values_are_numpys(dtype, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    if x.size:
        x.flat[0], x.flat[-1] = np.nan, -0.0
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    np.testing.assert_array_equal(M.pad(x), padded, strict=True)
    assert np.array_equal(np.signbit(M.pad(x)), np.signbit(padded))
    np.testing.assert_array_equal(M.slabs(x, x * 2), np.concatenate([x, x * 2, x], axis=1), strict=True)
    np.testing.assert_array_equal(M.turned(x), np.transpose(x, [0, 3, 1, 2]), strict=True)
    c = rng.standard_normal(shape[1:2] + (1, 1)).astype(dtype)
    np.testing.assert_array_equal(M.across(x, c), x * c, strict=True)


def test_bools_and_broadcast_conditions():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((4, 1, 3, 5)), rng.standard_normal((4, 1, 3, 5))
    m = rng.standard_normal((1, 1, 3, 5)) > 0
    np.testing.assert_array_equal(M.picked(m, a, b), np.where(m, a, b), strict=True)
    np.testing.assert_array_equal(M.slabs(m, ~m), np.concatenate([m, ~m, m], axis=1), strict=True)

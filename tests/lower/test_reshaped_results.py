"""A result that is a reshape of a value read nowhere else is computed straight into the output
buffer (lower/llvm.py, _params_and_destinations): the gradient of a function that starts with a
reshape (max pooling over tiles) ends with the reshape back, which used to copy the whole
gradient once more. The values are checked in every case the aliasing must not touch: a value
also read elsewhere, a param, another result, a loop's carry, chains of reshapes."""

from __future__ import annotations

import numpy as np
from lower.test_llvm import show_llvm
from support.native import module

M = module("""
    import nn
    fn pool_grad(x) = grad(fn(y) => sum(nn.max_pool2d(y, 2, 2) ** 2))(x)
    fn of_max(x) = reshape(max(reshape(x, [2, 3, 2]), axis=2), [3, 2])
    fn read_again(x) {
        let m = max(reshape(x, [2, 3, 2]), axis=2);
        (reshape(m, [6]), m * 2.0)
    }
    fn of_param(x) = (reshape(x, [3, 4]), x * 1.0)
    fn of_result(x) {
        let m = max(reshape(x, [2, 3, 2]), axis=2);
        (m, reshape(m, [6]))
    }
    fn chain(x) = reshape(reshape(max(reshape(x, [2, 3, 2]), axis=2), [3, 2]), [6])
    fn of_carry(x) = reshape(fold(fn(a, r) => a + r, zeros([4]), reshape(x, [3, 4])), [2, 2])
""")


def test_a_gradient_ending_in_a_reshape_is_not_copied(tmp_path, capsys):
    p = tmp_path / "p.dfl"
    p.write_text("import nn\nfn main(x) = grad(fn(y) => sum(nn.max_pool2d(y, 2, 2) ** 2))(x)\n")
    np.save(tmp_path / "x.npy", np.ones((4, 2, 16, 16)))
    out = show_llvm(capsys, p, "--arg", f"x={tmp_path / 'x.npy'}")
    assert "memcpy" not in out["LLVM IR, optimised"]


def test_values():
    x = np.random.default_rng(4).standard_normal(12)
    m = x.reshape(2, 3, 2).max(axis=2)
    np.testing.assert_array_equal(M.of_max(x), m.reshape(3, 2))
    a, b = M.read_again(x)
    np.testing.assert_array_equal(a, m.reshape(6))
    np.testing.assert_array_equal(b, m * 2.0)
    a, b = M.of_param(x)
    np.testing.assert_array_equal(a, x.reshape(3, 4))
    np.testing.assert_array_equal(b, x)
    a, b = M.of_result(x)
    np.testing.assert_array_equal(a, m)
    np.testing.assert_array_equal(b, m.reshape(6))
    np.testing.assert_array_equal(M.chain(x), m.reshape(6))
    np.testing.assert_array_equal(M.of_carry(x), x.reshape(3, 4).sum(axis=0).reshape(2, 2))
    y = np.random.default_rng(5).standard_normal((2, 3, 4, 6))
    t = y.reshape(2, 3, 2, 2, 3, 2)
    p = t.max(axis=(3, 5), keepdims=True)
    first = (t == p) & (np.cumsum(np.cumsum(t == p, axis=3), axis=5) == 1)  # (no ties in normal data)
    np.testing.assert_allclose(M.pool_grad(y), np.where(first, 2 * p, 0.0).reshape(y.shape), rtol=1e-14)

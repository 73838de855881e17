"""A loop's carry that is a result, updated in place, starts in the output buffer: its initial
value, when read nowhere else, is computed there (lower/llvm.py, chained_destinations), so the
loop copies nothing in (the cross-entropy gradient: the softmax term seeds the scan that adds
the labels' terms, and was copied once more, 1 ms at 512x10000). The values are checked where
the initial value must not be shared: read elsewhere, a parameter, no iterations, a carry that
is not updated in place, reshapes around it, a while loop's gradient, a long program split
into parts."""

from __future__ import annotations

import numpy as np
from lower.test_llvm import loops_named
from support.native import module

from diffc.lower.llvm import body_parts
from diffc.pipeline import to_ir
from diffc.runtime.values import type_of

M = module("""
    fn sorted_sum(x, m) = fold(fn(a, r) => a + r, sort(x), m)
    fn read_again(x, m) {
        let s = sort(x);
        (fold(fn(a, r) => a + r, s, m), s * 2.0)
    }
    fn of_param(x, m) = fold(fn(a, r) => a + r, x, m)
    fn product(x, m) = fold(fn(a, r) => a * r, sort(x), m)
    fn two(x, m) = fold(fn(c, r) => (c.0 + r, c.1 + r * r), (sort(x), cumsum(x, axis=0)), m)
    fn reshaped(x, m) = reshape(fold(fn(a, r) => a + r, reshape(sort(x), [2, 2]), reshape(m, [5, 2, 2])), [4])
    fn weight_grad(v, y0) =
        grad(fn(w) => sum(while(fn(s) => s.n < 3, fn(s) => {y: s.y * w, n: s.n + 1}, {y: y0, n: 0}).y))(v)
    fn of_while(x) = grad(fn(v) => sum(while(fn(s) => s.n < 3, fn(s) => {y: s.y * v, n: s.n + 1}, {y: v, n: 0}).y))(x)
""")


def copy_loops(capsys, tmp_path, source, *args) -> int:
    return loops_named(capsys, tmp_path, "cp", source, *args)


def test_a_carry_that_is_a_result_starts_in_the_output(capsys, tmp_path):
    args = ("--arg", "x=[3.0, 1.0, 2.0]", "--arg", "m=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]")
    assert copy_loops(capsys, tmp_path, "fn main(x, m) = fold(fn(a, r) => a + r, sort(x), m)\n", *args) == 0
    # read again after the loop: computed apart and copied in (the other loop writes s * 2.0)
    source = "fn main(x, m) { let s = sort(x); (fold(fn(a, r) => a + r, s, m), s * 2.0) }\n"
    assert copy_loops(capsys, tmp_path, source, *args) == 2


def test_a_while_loops_gradient_accumulates_in_the_output(capsys, tmp_path):
    """while_untape's carry (the cotangent of a weight the loop reads) is the result: it is
    accumulated in the output buffer, so the program copies nothing more than the same one
    whose result is that carry times 2 (one loop writing the product)."""
    loop = "grad(fn(w) => sum(while(fn(s) => s.n < 3, fn(s) => {y: s.y * w, n: s.n + 1}, {y: y0, n: 0}).y))(v)"
    args = ("--arg", "v=[1.0, 2.0, 3.0, 4.0]", "--arg", "y0=[1.0, 1.0, 2.0, 0.5]")
    plain = copy_loops(capsys, tmp_path, f"fn main(v, y0) = {loop}\n", *args)
    assert plain == copy_loops(capsys, tmp_path, f"fn main(v, y0) = {loop} * 2.0\n", *args) - 1
    v, y0 = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 2.0, 0.5])
    np.testing.assert_allclose(M.weight_grad(v, y0), 3 * v**2 * y0, rtol=1e-14)


def test_values():
    rng = np.random.default_rng(3)
    x, m = rng.standard_normal(4), rng.standard_normal((5, 4))
    s = np.sort(x)
    np.testing.assert_allclose(M.sorted_sum(x, m), s + m.sum(0), rtol=1e-14)
    np.testing.assert_array_equal(M.sorted_sum(x, np.zeros((0, 4))), s)  # no iterations
    a, b = M.read_again(x, m)
    np.testing.assert_allclose(a, s + m.sum(0), rtol=1e-14)
    np.testing.assert_array_equal(b, 2.0 * s)
    x0 = x.copy()
    np.testing.assert_allclose(M.of_param(x, m), x + m.sum(0), rtol=1e-14)
    np.testing.assert_array_equal(x, x0)  # the argument is not written
    np.testing.assert_allclose(M.product(x, m), s * m.prod(0), rtol=1e-14)
    a, b = M.two(x, m)
    np.testing.assert_allclose(a, s + m.sum(0), rtol=1e-14)
    np.testing.assert_allclose(b, np.cumsum(x) + (m * m).sum(0), rtol=1e-14)
    np.testing.assert_allclose(M.reshaped(x, m), (s.reshape(2, 2) + m.reshape(5, 2, 2).sum(0)).reshape(4))
    np.testing.assert_allclose(M.of_while(x), 4 * x**3, rtol=1e-14)


def test_edges():
    x = np.array([np.inf, -0.0, np.nan, 0.0])
    m = np.array([[1.0, -np.inf, 0.0, -0.0]])
    got = M.sorted_sum(x, m)
    np.testing.assert_array_equal(got, np.sort(x) + m[0])
    assert np.signbit(M.sorted_sum(np.array([-0.0]), np.array([[-0.0]]))[0])  # -0 + -0 stays -0
    assert M.sorted_sum(np.zeros(0), np.zeros((3, 0))).shape == (0,)


def test_across_the_parts_of_a_long_program():
    """The initial value made in an early part of a long entry (Note [Parts] in lower/llvm.py)
    and the loop in a later one: the early part computes it into a buffer of its own (a part's
    inputs and outputs never overlap), the loop's copies it into the output."""
    steps = "\n".join(f"    let t{i + 1} = sin(t{i}) * 0.5 + 1.0;" for i in range(40))
    m = module(
        f"fn main(x, m) {{\n    let s = sort(x);\n    let t0 = sum(x);\n{steps}\n"
        "    (fold(fn(a, r) => a + r, s, m), t40)\n}\n"
    )
    rng = np.random.default_rng(5)
    x, rows = rng.standard_normal(4), rng.standard_normal((3, 4))
    arrays, _ = m.main.signature(x, rows)
    prog, _ = to_ir(m.ast, "main", tuple(type_of(a) for a in arrays))
    assert len(body_parts(prog.main.body)) > 1
    t = x.sum()
    for _ in range(40):
        t = np.sin(t) * 0.5 + 1.0
    a, b = m.main(x, rows)
    np.testing.assert_allclose(a, np.sort(x) + rows.sum(0), rtol=1e-14)
    np.testing.assert_allclose(b, t, rtol=1e-14)


def test_a_loops_rows_are_computed_in_place(capsys, tmp_path):
    """A result of a map's or a scan's body that the body also reads (so computed into memory,
    not fused) is computed straight into its row of the stacked output, with no copy after
    (attention's softmax, taped for its backward, was copied: 512 KiB a head)."""
    mapped = "fn main(x) = map(fn(r) => { let e = exp(r); (e, sum(e)) }, x)\n"
    scanned = "fn main(x) = scan(fn(c, r) => { let e = exp(r) * c; (c + 1.0, (e, sum(e))) }, 1.0, x)\n"
    args = ("--arg", "x=[[1.0, 2.0], [3.0, 4.0]]")
    assert copy_loops(capsys, tmp_path, mapped, *args) == 0
    # the scan's carry and its second result, a number per row, are written after each step
    assert copy_loops(capsys, tmp_path, scanned, *args) == 2
    m = module(mapped + scanned.replace("main", "scanned"))
    x = np.array([[1.0, -np.inf, 0.0], [np.nan, 2.0, -1.0], [700.0, 1.0, 0.5]])
    e, s = m.main(x)
    np.testing.assert_allclose(e, np.exp(x), rtol=1e-15)
    np.testing.assert_allclose(s, np.exp(x).sum(axis=1), rtol=1e-15)
    c, (e, s) = m.scanned(x)
    want = np.exp(x) * np.arange(1.0, 4.0)[:, None]
    assert c == 4.0
    np.testing.assert_allclose(e, want, rtol=1e-15)
    np.testing.assert_allclose(s, want.sum(axis=1), rtol=1e-15)

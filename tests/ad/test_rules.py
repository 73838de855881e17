"""Every differentiable primitive's derivative rules against finite differences, at orders 1 and 2
(style.md, practice 2; autograd's `check_grads`, JAX's `lax_autodiff_test.py`).

Each row of CASES is a tiny DFL function `f` that exercises one primitive (or one structured
op) on array arguments, so that nothing is folded at compile time, with a sampler of inputs away
from the primitive's kinks. One test, parametrised by row and order, checks:

order 1   grad of  s = sum(sin(f(...)) * w)  against central differences, element by element;
          jvp of f against a central difference along a random tangent v;
          <u, J v> two ways: <u, jvp(f)(x; v)> == <vjp(f)(x; u), v>.
order 2   the gradient differentiated again by a DFL program,
              grad(fn(x) => grad(s)(x) @ v)(x)          (reverse over reverse, in DFL)
          against a central difference of the compiled gradient along v; and <u, J v> two ways
          for the gradient function gs(x, w) = grad(s)(x, w): jvp over reverse vs reverse over
          reverse, and jvp(gs) against a central difference of gs.

The `sin` around f makes the second derivative of a linear primitive (reshape, slice, ...) pass
through its transpose's rules (pad, ...), so order 2 checks those rules too: `grad_prims` lists
the primitives a row's gradient program must contain.

A registry test asks every primitive of `all_prims()` for its derivative rules (or a nondiff
mark), and another asks that every differentiable primitive is exercised by some row here, so a
new primitive fails until it is classified and tested.
"""

from __future__ import annotations

import functools
import textwrap
import zlib
from dataclasses import dataclass, field

import numpy as np
import pytest

import diffc
from diffc.prims.core import all_prims

from .fd import assert_close, directional, inner, is_float, leaves, numerical_grad, random_like, rebuild

# --- input samplers ---------------------------------------------------------------------------


def normal(*shape):
    return lambda r: r.normal(size=shape)


def positive(*shape, lo=0.5, hi=2.0):
    return lambda r: r.uniform(lo, hi, size=shape)


def away(*shape, lo=0.3, hi=1.5):
    """Values of either sign at least `lo` away from 0 (the kink of abs, relu, where)."""
    return lambda r: r.uniform(lo, hi, size=shape) * r.choice([-1.0, 1.0], size=shape)


def distinct(*shape, gap=0.2):
    """Values at least `gap` apart (no ties for max/min to break)."""

    def draw(r):
        n = int(np.prod(shape))
        v = (np.arange(n) - n / 2) * gap + r.uniform(0, gap / 4, size=n)
        return r.permutation(v).reshape(shape)

    return draw


def with_zeros(draw, *where):
    """draw's values with exact zeros at the given flat positions (a smooth rule must be exact
    there too: prod's partials are products of the other elements, not out / x)."""

    def zeroed(r):
        v = np.array(draw(r), dtype=np.float64)
        v.reshape(-1)[list(where)] = 0.0
        return v

    return zeroed


def scalar(draw):
    return lambda r: float(draw(r))


def const(v):
    return lambda r: v


def dyadic(*shape):
    """Multiples of 1/64 in [-2, 2]: exact in f32, and still exact after a step of 2**-14."""
    return lambda r: r.integers(-128, 128, size=shape) / 64.0


def offset_pair(n):
    """(x, y) for maximum/minimum: x - y at least 0.2 from 0, of either sign."""

    def draw(r):
        y = r.normal(size=n)
        return y + away(n, lo=0.2)(r), y

    return draw


def mod_pair(n):
    """(x, y) with y in [1, 2] and x / y at least 0.2 from an integer (the jumps of x % y)."""

    def draw(r):
        y = r.uniform(1.0, 2.0, size=n)
        q = r.integers(-2, 3, size=n) + r.uniform(0.2, 0.8, size=n)
        return q * y, y

    return draw


# --- the table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    src: str  # defines fn f(...) returning a float array or scalar
    args: tuple  # one sampler per argument of f; a sampler returning a tuple fills several
    prims: tuple[str, ...] = ()  # primitives that must appear in f's IR
    grad_prims: tuple[str, ...] = ()  # ... and in the IR of its gradient program
    step1: float = 1e-6
    step2: float = 1e-6
    rtol1: float = 1e-6
    rtol2: float = 1e-6
    # FD reference when f's value is not the function it differentiates (stop_gradient): a
    # DFL function `f_fd(args..., base args...)`, the function whose derivative at args == base
    # the gradient of f must be
    fd: bool = False
    dyadic_tangents: bool = False  # tangents of multiples of 1/4, so that x + h v stays exact in f32
    xfail: dict = field(default_factory=dict)  # order -> reason: a known bug (strict)

    def draw(self, rng) -> tuple:
        out = []
        for s in self.args:
            v = s(rng)
            out.extend(v if isinstance(v, tuple) else (v,))
        return tuple(out)


def C(id, src, *args, **kw):
    return Case(id, textwrap.dedent(src).strip(), tuple(args), **kw)


ELEMENTWISE = [
    C("add", "fn f(x, y) = x + y", normal(2, 3), normal(3), prims=("add",)),
    C("sub", "fn f(x, y) = x - y", normal(2, 1), normal(2, 3), prims=("sub",)),
    C("mul", "fn f(x, y) = x * y", normal(2, 3), normal(2, 1), prims=("mul",)),
    C("mul-zeros", "fn f(x, y) = x * y * x", with_zeros(normal(2, 3), 0, 4), with_zeros(normal(3), 1), prims=("mul",)),
    C("div", "fn f(x, y) = x / y", normal(2, 3), away(3, lo=0.5), prims=("div",)),
    C("neg", "fn f(x) = -x * x", normal(4), prims=("neg",)),
    C("abs", "fn f(x) = abs(x) * x", away(5), prims=("abs",)),
    C("exp", "fn f(x) = exp(x)", with_zeros(normal(4), 0), prims=("exp",)),
    C("log", "fn f(x) = log(x)", positive(4), prims=("log",)),
    C("log1p", "fn f(x) = log1p(x)", positive(4, lo=-0.5, hi=2.0), prims=("log1p",)),
    C("sqrt", "fn f(x) = sqrt(x)", positive(4), prims=("sqrt",)),
    C("sin", "fn f(x) = sin(x)", normal(4), prims=("sin",)),
    C("cos", "fn f(x) = cos(x)", normal(4), prims=("cos",)),
    C("tanh", "fn f(x) = tanh(x)", with_zeros(normal(4), 1), prims=("tanh",)),
    C("erf", "fn f(x) = erf(x)", with_zeros(normal(4), 1), prims=("erf",)),
    C("sigmoid", "fn f(x) = sigmoid(x)", with_zeros(normal(4), 2), prims=("sigmoid",)),
    C("pow-float", "fn f(x, y) = x ** y", positive(4), normal(4), prims=("pow",)),
    C("pow-float-scalar-base", "fn f(x, y) = x ** y", scalar(positive()), normal(3), prims=("pow",)),
    C("pow-int-literal", "fn f(x) = x ** 3", with_zeros(normal(4), 0), prims=("pow",)),
    C("pow-square-zero", "fn f(x) = x ** 2.0", with_zeros(normal(4), 3), prims=("pow",)),
    C("pow-int-array", "fn f(x, n) = x ** n", away(4), const(np.array([0, 1, 2, 3])), prims=("pow",)),
    # constant exponents lower to exact forms (lower/vmath.py's pow_constant), their derivatives' too
    C(
        "pow-constant-forms",
        "fn f(x) = x ** 0.5 + x ** -0.5 + x ** 1.5 + x ** 4 - x ** -2 + x ** -1 + x ** 3",
        positive(4),
        prims=("pow",),
    ),
    C("pow-negative-base-odd", "fn f(x) = x ** 3 + x ** 5 - x ** -3", away(4), prims=("pow",)),
    C("maximum", "fn f(x, y) = maximum(x, y)", offset_pair(5), prims=("max",)),
    C("minimum", "fn f(x, y) = minimum(x, y)", offset_pair(5), prims=("min",)),
    C("maximum-broadcast", "fn f(x, y) = maximum(x, y)", away(4), const(0.0), prims=("max",)),
    C("relu", "fn f(x) = relu(x) * x", away(5), prims=("max",)),
    # the gradient multiplies by the partials of mul with guarded_mul; order 2 checks its rules
    C(
        "where",
        "fn f(x, y) = where(x > 0.0, x * y, sin(y))",
        away(5),
        normal(5),
        prims=("select",),
        grad_prims=("guarded_mul",),
    ),
    C("where-broadcast", "fn f(x, y) = where(x > 0.0, y, x)", away(2, 3), scalar(normal()), prims=("select",)),
    # f32(x) and f64(...) convert both ways. Dyadic inputs and power-of-two steps keep x +- h
    # exact in f32; but the cotangent of an f32 value is rounded to f32 (6e-8 relative), which
    # the finite difference of the gradient at order 2 divides by its step
    C(
        "convert",
        "fn f(x, y) = f64(f32(x)) ** 2 * y",
        dyadic(4),
        normal(4),
        prims=("convert",),
        step1=2.0**-14,
        step2=2.0**-10,
        rtol2=1e-4,
        dyadic_tangents=True,
    ),
    C("mod", "fn f(x, y) = (x % y) * x", mod_pair(4), prims=("mod",)),
    C("tan", "fn f(x) = tan(x)", with_zeros(normal(4), 1), prims=("tan",)),
    # the rounding functions are piecewise constant: only the other factor's derivative is left
    C("floor-ceil-round-sign", "fn f(x) = (floor(x) + ceil(x) + round(x) + sign(x)) * x", away(5), prims=("mul",)),
    # clip: x's derivative on [lo, hi] (here strictly inside or outside), lo's below, hi's above
    C("clip", "fn f(x, lo, hi) = clip(x, lo, hi)", offset_pair(6), const(np.full(6, 0.5)), prims=("max", "min")),
    C("max-two-args", "fn f(x, y) = max(x, y) * min(x, y)", offset_pair(5), prims=("max", "min")),
]

REDUCTIONS = [
    C("sum", "fn f(x) = sum(x * x)", normal(2, 3), prims=("reduce_sum",)),
    C("sum-axis", "fn f(x) = sum(x * x, axis=1)", normal(2, 3), prims=("reduce_sum",)),
    C("sum-axis0-3d", "fn f(x) = sum(x, axis=0)", normal(2, 3, 2), prims=("reduce_sum",)),
    C("prod", "fn f(x) = prod(x)", away(2, 3, lo=0.5), prims=("reduce_prod",)),
    C("prod-axis", "fn f(x) = prod(x, axis=0)", away(3, 2, lo=0.5), prims=("reduce_prod",)),
    # rows with one, two and three zeros
    C(
        "prod-zeros",
        "fn f(x) = prod(x, axis=1)",
        with_zeros(away(3, 4, lo=0.5), 1, 4, 7, 8, 9, 10),
        prims=("reduce_prod",),
    ),
    C("prod-one-zero", "fn f(x) = prod(x)", with_zeros(away(4, lo=0.5), 2), prims=("reduce_prod",)),
    C("prod-two-zeros", "fn f(x) = prod(x) * x", with_zeros(away(4, lo=0.5), 0, 3), prims=("reduce_prod",)),
    C("max", "fn f(x) = max(x) * x", distinct(2, 3), prims=("reduce_max",)),
    C("max-axis", "fn f(x) = max(x, axis=1)", distinct(3, 4), prims=("reduce_max",)),
    C("max-axis0", "fn f(x) = max(x, axis=0)", distinct(3, 4), prims=("reduce_max",)),
    C("min", "fn f(x) = min(x) * x", distinct(2, 3), prims=("reduce_min",)),
    C("min-axis", "fn f(x) = min(x, axis=0)", distinct(3, 4), prims=("reduce_min",)),
    C("mean", "fn f(x) = mean(x * x)", normal(2, 3), prims=("reduce_sum",)),
    C("mean-axis", "fn f(x) = mean(x * x, axis=0)", normal(2, 3), prims=("reduce_sum",)),
    C("sum-axes-keepdims", "fn f(x) = sum(x, axis=(0, 2), keepdims=true) * x", normal(2, 3, 2), prims=("reduce_sum",)),
    C("max-axes", "fn f(x) = max(x, axis=[0, -1])", distinct(2, 3, 2), prims=("reduce_max",)),
    C("max-middle-axis", "fn f(x) = max(x, axis=1) * 2.0", distinct(2, 3, 2), grad_prims=("extreme_scatter",)),
    C("min-axes-last", "fn f(x) = min(x, axis=(0, 2))", distinct(2, 3, 2), grad_prims=("extreme_scatter",)),
    C("prod-keepdims", "fn f(x) = prod(x, axis=1, keepdims=true) * x", away(2, 3, lo=0.5), prims=("reduce_prod",)),
    C("var", "fn f(x) = var(x)", normal(2, 3), prims=("reduce_sum",)),
    C("var-axis-ddof", "fn f(x) = var(x, axis=0, ddof=1)", normal(3, 2), prims=("reduce_sum",)),
    C("std", "fn f(x) = std(x, axis=(0, 1), keepdims=true) * x", normal(2, 3), prims=("reduce_sum", "sqrt")),
    C("logsumexp", "fn f(x) = logsumexp(x)", normal(2, 3), prims=("reduce_sum", "exp")),
    C("logsumexp-axis", "fn f(x) = logsumexp(x * 30.0, axis=1, keepdims=true)", normal(3, 2), prims=("exp",)),
]

LINALG = [
    C("matmul-mm", "fn f(a, b) = a @ b", normal(2, 3), normal(3, 4), prims=("matmul",)),
    C("matmul-mv", "fn f(a, b) = a @ b", normal(2, 3), normal(3), prims=("matmul",)),
    C("matmul-vm", "fn f(a, b) = a @ b", normal(3), normal(3, 2), prims=("matmul",)),
    C("matmul-vv", "fn f(a, b) = a @ b", normal(3), normal(3), prims=("matmul",)),
    C("matmul-batched", "fn f(a, b) = a @ b", normal(2, 2, 3), normal(2, 3, 2), prims=("matmul",)),
    C("matmul-batch-broadcast", "fn f(a, b) = a @ b", normal(3, 1, 2, 3), normal(2, 3, 2), prims=("matmul",)),
    C("matmul-batch-mm", "fn f(a, b) = a @ b", normal(2, 3), normal(2, 3, 2), prims=("matmul",)),
    C("einsum-mm-t", 'fn f(a, b) = einsum("ij,kj->ik", a, b)', normal(2, 3), normal(4, 3), prims=("matmul",)),
    C("einsum-attn", 'fn f(q, k) = einsum("bhqd,bhkd->bhqk", q, k)', normal(1, 2, 2, 3), normal(1, 2, 3, 3)),
    C("einsum-trace", 'fn f(a, b) = einsum("ii", a) * einsum("iij->j", b)', normal(3, 3), normal(2, 2, 3)),
    C("einsum-ellipsis", 'fn f(a, b) = einsum("...ij,...j", a, b)', normal(2, 1, 2, 3), normal(3, 3)),
    C("einsum-outer", 'fn f(a, b) = einsum("i,jk->kij", a, b)', normal(2), normal(3, 2), prims=("mul",)),
    C("matmul-batch-vector", "fn f(a, b, v) = (a @ v) * (v @ b)", normal(2, 3, 3), normal(2, 3, 3), normal(3)),
]

SHAPE = [
    C("reshape", "fn f(x) = reshape(x, [3, 2])", normal(2, 3), prims=("reshape",)),
    C("transpose", "fn f(x) = transpose(x) * x[0, 0]", normal(2, 3), prims=("transpose",)),
    C("transpose-perm", "fn f(x) = transpose(x, [1, 2, 0])", normal(2, 3, 2), prims=("transpose",)),
    C("broadcast", "fn f(x) = full([2, 3], x) * ones([2, 3])", scalar(normal()), prims=("broadcast",)),
    C("slice", "fn f(x) = x[1:3]", normal(5), prims=("slice",), grad_prims=("pad",)),
    C("slice-open", "fn f(x) = x[2:] * x[:3]", normal(5), prims=("slice",), grad_prims=("pad",)),
    C("slice-2d", "fn f(m) = m[1:, :2]", normal(3, 3), prims=("slice",), grad_prims=("pad",)),
    C("slice-step", "fn f(x) = x[::2] * x[1::2]", normal(6), prims=("strided_slice",), grad_prims=("strided_pad",)),
    C("slice-back", "fn f(m) = m[::-1, 2:0:-2]", normal(3, 4), prims=("strided_slice",), grad_prims=("strided_pad",)),
    C("reshape-inferred", "fn f(x) = reshape(x, [-1, 2])", normal(2, 3), prims=("reshape",)),
    C(
        "segment-sum",
        "fn f(x, ids) = segment_sum(x * x, ids, 3)",
        normal(5, 2),
        const(np.array([2, 0, 2, -1, 1])),
        prims=("gather_add",),
        grad_prims=("gather",),
    ),
    C(
        "index-static",
        "fn f(x, m) = x[1] * m[1, 2] + x[-1]",
        normal(4),
        normal(2, 3),
        prims=("index",),
        grad_prims=("index_scatter",),
    ),
    C("index-column", "fn f(m) = m[:, 1]", normal(3, 4), prims=("index",), grad_prims=("index_scatter",)),
    C(
        "index-dynamic",
        "fn f(x, m, i) = x[i] * m[i]",
        normal(4),
        normal(4, 2),
        const(2),
        prims=("index",),
        grad_prims=("index_scatter",),
    ),
    C(
        "gather-repeated",
        "fn f(t, ids) = t[ids]",
        normal(3, 2),
        const(np.array([0, 2, 0, 1, 0])),
        prims=("gather",),
        grad_prims=("gather_add",),
    ),
    C(
        "gather-2d-ids",
        "fn f(t, ids) = t[ids]",
        normal(4),
        const(np.array([[3, 1], [3, 3]])),
        prims=("gather",),
        grad_prims=("gather_add",),
    ),
    C("concat", "fn f(x, y) = concat(x, y, x, axis=0)", normal(2, 2), normal(1, 2), prims=("concat",)),
    C("concat-axis1", "fn f(x, y) = concat(x, y, axis=1)", normal(2, 2), normal(2, 3), prims=("concat",)),
    C("stack", "fn f(x, y) = stack(x, y, axis=1)", normal(3), normal(3)),
    C("windows", "fn f(x) = windows(x, 3)", normal(5), prims=("windows",), grad_prims=("unwindows",)),
    C(
        "conv1d",
        "fn f(x, k) = map(fn(w) => sum(w * k), windows(x, len(k)))",
        normal(6),
        normal(3),
        prims=("windows", "map"),
    ),
    C("one-hot", "fn f(w, ids) = one_hot(ids, 4) @ w", normal(4, 2), const(np.array([3, 0, 3])), prims=("matmul",)),
]

STRUCTURED = [
    C("map", "fn f(w, xs) = map(fn(r) => tanh(w @ r), xs)", normal(2, 2), normal(3, 2), prims=("map",)),
    C("map-two", "fn f(xs, ys) = map(fn(a, b) => sin(a) * b, xs, ys)", normal(3, 2), normal(3, 2), prims=("map",)),
    C(
        "fold",
        """
        fn f(w, h0, xs) = fold(fn(h, x) => tanh(w @ h + x), h0, xs)
        """,
        normal(2, 2),
        normal(2),
        normal(4, 2),
        prims=("scan",),
    ),
    C(
        "scan",
        """
        fn f(c0, xs) {
            let (c, ys) = scan(fn(c, x) => (sin(c) * x + 0.5, c * x), c0, xs);
            ys + c
        }""",
        normal(2),
        normal(3, 2),
        prims=("scan",),
    ),
    C(
        "scan-reverse-tuple-carry",
        """
        fn f(a, b, xs) {
            let ((h, s), ys) = scan(fn(c, x) {
                let (h, s) = c;
                ((tanh(h * x + s), s + 0.5 * h), h * s)
            }, (a, b), xs, reverse=true);
            concat(h, s, ys[0], ys[2])
        }""",
        normal(2),
        normal(2),
        normal(3, 2),
        prims=("scan",),
    ),
    C("unfold", "fn f(a, s0) = unfold(fn(s) => (tanh(a @ s), s * s), s0, 3)", normal(2, 2), normal(2), prims=("scan",)),
    C("iterate", "fn f(a, x) = iterate(fn(x) => sin(x) * a, x, 4)", normal(3), normal(3), prims=("scan",)),
    # the trip count depends on the data (it is 3..6 on these inputs, and the same at x +- h)
    C(
        "while",
        """
        fn f(a, x) {
            let (v, t) = while(fn(s) => s.1 < 4.0, fn(s) => (sin(s.0) * a + s.0, s.1 + 0.5 + sum(a * a)), (x, 0.0));
            v * t
        }""",
        positive(3, lo=0.3, hi=0.6),
        normal(3),
        prims=("while",),
        grad_prims=("while_tape", "while_untape"),
    ),
    C(
        "if",
        """
        fn g(x, y) = if sum(x) > 0.0 { sin(x) * y } else { cos(y) * x * x }
        fn f(x, y) = g(x, y) + g(-x, y)
        """,
        lambda r: np.array([0.5, 1.0, -0.3]) + r.uniform(-0.1, 0.1, 3),
        normal(3),
        prims=("cond",),
    ),
    C("comprehension-1d", "fn f(x, y) = for i in 0..len(x) => sin(x[i]) * y[len(x) - 1 - i]", normal(3), normal(3)),
    C(
        "comprehension-2d",
        "fn f(a, b, m) = for i in 0..2, j in 0..3 => a[i] * b[j] + m[i, j] * a[i]",
        normal(2),
        normal(3),
        normal(2, 3),
    ),
    C(
        "comprehension-reduced",
        "fn f(m, v) = for i in 0..2 => sum(for j in 0..3 => m[i, j] * sin(v[j]))",
        normal(2, 3),
        normal(3),
    ),
    C(
        "recursion",
        """
        fn pw(x, n) = if n == 0 { x } else { sin(pw(x, n - 1)) * x }
        fn f(x, n) = pw(x, n)
        """,
        normal(3),
        const(3),
        prims=("call",),
        grad_prims=("tape_pack", "tape_unpack"),
    ),
    # a loop body returning a captured value (or a parameter) unchanged: every row is a use of it
    C("map-returns-capture", "fn f(x) = sum(for j in 0..3 => x, axis=0) * x", normal(2), prims=("map",)),
    C("comprehension-2d-capture-row", "fn f(p) = for i in 0..2, j in 0..3 => p[i]", normal(2), prims=("map",)),
    C("nested-map-capture", "fn f(x, xs) = map(fn(r) => map(fn(s) => x, xs), xs)", normal(2), normal(3)),
    C("map-returns-twice", "fn f(x, xs) { let (a, b) = map(fn(r) => (x, x), xs); a + 3.0 * b }", normal(2), normal(3)),
    C(
        "scan-returns-capture",
        "fn f(x, c0, xs) { let (c, ys) = scan(fn(c, r) => (x, c * r), c0, xs); concat(c, ys[1], ys[2]) }",
        normal(2),
        normal(2),
        normal(3, 2),
        prims=("scan",),
    ),
    C("fold-carry-unchanged", "fn f(w, xs) = fold(fn(c, r) => c, w, xs) * w", normal(2), normal(3), prims=("scan",)),
    C(
        "scan-returns-twice",
        "fn f(x, c0, xs) { let (c, ys) = scan(fn(c, r) => (x, x), c0, xs); c + 3.0 * sum(ys, axis=0) }",
        normal(2),
        normal(2),
        normal(3),
        prims=("scan",),
    ),
    # one weight captured by a function used at many places: one gradient, the sum of all uses
    C(
        "closure-weight-tying",
        """
        fn f(w, xs) {
            let layer = fn(x) => tanh(w @ x);
            let ys = map(layer, xs);
            layer(layer(xs[0])) + sum(ys, axis=0) + fold(fn(h, x) => layer(h + x), xs[1], xs)
        }""",
        normal(2, 2),
        normal(3, 2),
        prims=("map", "scan"),
    ),
    C(
        "stop-gradient",
        """
        fn f(x, y) = x * stop_gradient(sin(x) * y) + y * y
        fn f_fd(x, y, x0, y0) = x * (sin(x0) * y0) + y * y
        """,
        normal(3),
        normal(3),
        prims=("stop_gradient",),
        fd=True,
    ),
    C(
        "custom-vjp",
        """
        fn sq(x) = x * x
        fn sq_fwd(x) = (x * x, x)
        fn sq_bwd(x, ct) = (2.0 * x * ct,)
        fn f(x, y) = custom_vjp(sq, sq_fwd, sq_bwd)(sin(x) * y) + y
        """,
        normal(3),
        normal(3),
        prims=("custom_vjp",),
    ),
    C(
        "custom-vjp-two-args",
        """
        fn f(x, y) {
            let g = custom_vjp(fn(a, b) => a * exp(b), fn(a, b) { let e = exp(b); (a * e, (a, e)) },
                               fn(r, ct) => (ct * r.1, ct * r.0 * r.1));
            g(x, y) * x
        }""",
        normal(3),
        normal(3),
        prims=("custom_vjp",),
    ),
    C(
        "checkpoint",
        """
        fn f(a, x) {
            let g = checkpoint(fn(h) => tanh(a @ h) * h);
            g(g(x))
        }""",
        normal(3, 3),
        normal(3),
        prims=("checkpoint",),
    ),
    C(
        "checkpoint-k-fold",
        "fn f(w, h0, xs) = fold(fn(h, x) => tanh(w @ h + x), h0, xs, checkpoint=2)",
        normal(2, 2),
        normal(2),
        normal(5, 2),
        prims=("checkpoint", "scan"),
    ),
    C(
        "checkpoint-k-scan",
        """
        fn f(c0, xs) {
            let (c, ys) = scan(fn(c, x) => (sin(c) * x + 0.5, c * x), c0, xs, checkpoint=3);
            ys * c
        }""",
        normal(2),
        normal(7, 2),
        prims=("checkpoint", "scan"),
    ),
    C(
        "checkpoint-k-iterate",
        "fn f(a, x) = iterate(fn(x) => sin(x) * a, x, 5, checkpoint=2)",
        normal(3),
        normal(3),
        prims=("checkpoint", "scan"),
    ),
]

CASES = ELEMENTWISE + REDUCTIONS + LINALG + SHAPE + STRUCTURED

# cumulative and sorting built-ins: linrec (cumsum, cumprod, exact at zeros), and the gathers
# that cummax, sort and top_k make from their nondiff index primitives
CUMULATIVE_AND_SORTING = [
    C("cumsum", "fn f(x) = cumsum(x)", normal(2, 4), prims=("linrec",)),
    C("cumsum-axis0-reverse", "fn f(x) = cumsum(x, axis=0, reverse=true)", normal(3, 2), prims=("linrec",)),
    C("cumprod", "fn f(x) = cumprod(x)", away(2, 4, lo=0.5), prims=("linrec",)),
    C("cumprod-zeros", "fn f(x) = cumprod(x)", with_zeros(away(2, 4, lo=0.5), 1, 5, 6), prims=("linrec",)),
    C(
        "cumprod-axis0-reverse-zeros",
        "fn f(x) = cumprod(x, axis=0, reverse=true)",
        with_zeros(away(4, 2, lo=0.5), 2, 5),
        prims=("linrec",),
    ),
    C("cummax", "fn f(x) = cummax(x) * x", distinct(2, 5), prims=("cumargmax", "gather")),
    C("cummax-axis0", "fn f(x) = cummax(x, axis=0)", distinct(4, 3), prims=("cumargmax", "gather")),
    C("sort", "fn f(x) = sort(x) * x", distinct(2, 5), prims=("argsort", "gather")),
    C("sort-axis0", "fn f(x) = sort(x, axis=0)", distinct(4, 3), prims=("argsort", "gather")),
    C("top_k", "fn f(x) = top_k(x, 2).0", distinct(3, 4), prims=("argsort", "gather")),
    C("shuffle", "fn f(x) = shuffle(key(3), x) * x", normal(5, 2), prims=("argsort", "gather")),
]
CASES += CUMULATIVE_AND_SORTING

# --- the checker program ---------------------------------------------------------------------


def checker_source(case: Case, args: tuple) -> str:
    """f's source and the functions that differentiate it (see the module docstring)."""
    n = len(args)
    ps = [f"p{k}" for k in range(n)]
    fl = [k for k, a in enumerate(args) if is_float(a)]
    nums = "(" + ", ".join(map(str, fl)) + ("," if len(fl) == 1 else "") + ")"
    P = ", ".join(ps)
    V = ", ".join(f"v{k}" for k in fl)
    qs = [f"q{k}" if k in fl else f"p{k}" for k in range(n)]
    Q = ", ".join(f"q{k}" for k in fl)
    dot = " + ".join(f"sum(g.{j} * v{k})" for j, k in enumerate(fl))
    lines = [
        case.src,
        f"fn chk_s({P}, w) = sum(sin(f({P})) * w)",
        f"fn chk_gs({P}, w) = grad(chk_s, {nums})({P}, w)",
        f"fn chk_hv({P}, w, {V}) = grad(fn({Q}) {{ let g = grad(chk_s, {nums})({', '.join(qs)}, w); {dot} }}, "
        f"{tuple(range(len(fl))) if len(fl) > 1 else 0})({', '.join(f'p{k}' for k in fl)})",
    ]
    if case.fd:
        B = ", ".join(f"b{k}" for k in range(n))
        lines += [
            f"fn chk_s_fd({P}, {B}, w) = sum(sin(f_fd({P}, {B})) * w)",
            f"fn chk_gs_fd({P}, {B}, w) = grad(chk_s_fd, {nums})({P}, {B}, w)",
        ]
    return "\n".join(lines) + "\n"


def seed_of(s: str) -> int:
    return zlib.crc32(s.encode())


@functools.cache
def compiled(case_id: str):
    """The checker program of a case (compiled once for both orders) and its inputs."""
    case = BY_ID[case_id]
    args = case.draw(np.random.default_rng(seed_of(case_id)))
    return diffc.compile(checker_source(case, args), f"{case_id}.dfl"), args


BY_ID = {c.id: c for c in CASES}
assert len(BY_ID) == len(CASES), "duplicate case ids"


def _params():
    for c in CASES:
        for order in (1, 2):
            marks = [pytest.mark.xfail(reason=c.xfail[order], strict=True)] if order in c.xfail else []
            yield pytest.param(c, order, id=f"{c.id}-{order}", marks=marks)


@pytest.mark.parametrize("case, order", list(_params()))
def test_derivative_rules(case: Case, order: int):
    m, args = compiled(case.id)
    rng = np.random.default_rng(seed_of(case.id) + order)
    fl = tuple(k for k, a in enumerate(args) if is_float(a))
    y = m.f(*args)
    w = random_like(y, rng)
    v = random_like(args, rng)  # a tangent of every argument (zero for the integer ones)
    if case.dyadic_tangents:
        v = rebuild(v, [np.round(x * 4) / 4 for x in leaves(v)])
    vf = tuple(v[k] for k in fl)
    if case.fd:  # the function whose derivative f's is, with the stopped values frozen at args
        s_ref = lambda *a: m.chk_s_fd(*a[:-1], *args, a[-1])  # noqa: E731
        gs_ref = lambda *a: m.chk_gs_fd(*a[:-1], *args, a[-1])  # noqa: E731
    else:
        s_ref, gs_ref = m.chk_s, m.chk_gs

    if order == 1:
        _check_prims(m, "f", args, case.prims)
        got = diffc.grad(m.chk_s, fl + (len(args),))(*args, w)
        want = numerical_grad(s_ref, args + (w,), fl + (len(args),), case.step1)
        assert_close(leaves(got), want, case.rtol1, "grad vs finite differences")

        y2, dy = diffc.jvp(m.f)(*args, *v)
        assert_close(y2, y, 1e-12, "jvp's value vs f")
        f_ref = (lambda *a: m.f_fd(*a, *args)) if case.fd else m.f
        assert_close(leaves(dy), directional(f_ref, args, v, case.step1), case.rtol1, "jvp vs finite differences")
        u = random_like(y, rng)
        cts = diffc.vjp(m.f)(*args, u)
        assert isinstance(cts, tuple) and len(cts) == len(args)
        assert all(not np.any(cts[k]) for k in range(len(args)) if k not in fl)  # integer inputs: zeros
        assert_close(inner(u, dy), sum(inner(cts[k], v[k]) for k in fl), case.rtol1, "<u, jvp v> vs <vjp u, v>")
    else:
        if case.grad_prims:
            _check_prims(m, "chk_gs", args + (w,), case.grad_prims)
        hv = m.chk_hv(*args, w, *vf)
        hv = hv if len(fl) > 1 else (hv,)
        want = directional(gs_ref, args + (w,), v + (0.0 * np.asarray(w),), case.step2)
        assert_close(leaves(hv), want, case.rtol2, "grad of grad vs finite differences of the gradient")

        vw = random_like(w, rng)
        g, dg = diffc.jvp(m.chk_gs)(*args, w, *v, vw)
        assert_close(
            leaves(dg),
            directional(gs_ref, args + (w,), v + (vw,), case.step2),
            case.rtol2,
            "jvp of the gradient vs finite differences",
        )
        u = random_like(g, rng)
        cts = diffc.vjp(m.chk_gs)(*args, w, u)
        assert isinstance(cts, tuple) and len(cts) == len(args) + 1
        lhs = inner(u, dg)
        rhs = sum(inner(cts[k], v[k]) for k in fl) + inner(cts[-1], vw)
        assert_close(lhs, rhs, case.rtol2, "<u, jvp(grad) v> vs <vjp(grad) u, v>")


def _check_prims(m, fn, args, want):
    from support.native import ir_of, prim_names

    have = prim_names(ir_of(m, fn, *args))
    missing = set(want) - have
    assert not missing, f"the case does not exercise {sorted(missing)}: its IR has {sorted(have)}"


# --- the registry ---------------------------------------------------------------------------------

# Primitives that have neither derivative rules nor a nondiff mark, and why. They exist only in
# the bodies of a recursive function's .fwd and .bwd, which are never differentiated (a call of
# them is differentiated as a call of the function: prims/call.py); were one ever reached, it is
# refused with a located error (ad/vjp.py, `unsupported`), not given a nondiff mark's wrong zero.
NOT_DIFFERENTIATED = {
    "tape_pack": "the per-call tape of a recursive function's augmented forward",
    "tape_unpack": "reads a recursive call's tape back in its reverse function",
    "acc_new": "the cotangent buffer of an argument a recursion passes on unchanged",
    "acc_add": "adds to that buffer in a recursive function's reverse",
    "acc_add_at": "adds a row to that buffer in a recursive function's reverse",
    "acc_take": "reads that buffer back after the recursion's reverse",
}


@pytest.mark.parametrize("name", sorted(all_prims()))
def test_primitive_has_derivative_rules_or_is_nondiff(name):
    p = all_prims()[name]
    if name in NOT_DIFFERENTIATED:
        assert not p.nondiff and p.vjp is None and p.jvp is None and p.jvp_full is None, (
            f"{name} is listed in NOT_DIFFERENTIATED but now has rules or a mark: remove it from the list"
        )
        return
    if p.nondiff:
        assert p.vjp is None and p.vjp_fwd is None and p.jvp is None and p.jvp_full is None, (
            f"{name} is marked nondiff but has derivative rules"
        )
        return
    assert p.vjp is not None, f"{name}: no vjp rule and no nondiff mark"
    assert p.jvp is not None or p.jvp_full is not None, f"{name}: no jvp (or jvp_full) rule"
    if name in STRUCTURED:  # ops that own bodies: forward mode must transform the bodies too
        assert p.vjp_fwd is not None and p.jvp_full is not None, f"{name} needs vjp_fwd and jvp_full"


STRUCTURED = {"map", "scan", "while", "cond", "call", "checkpoint", "custom_vjp"}


# effects that only free a tape: their derivative is made from the loop they undo (ad/via.py)
FREES_A_TAPE = {"while_untape"}


def test_effects_are_not_differentiated():
    for name, p in all_prims().items():
        if p.effect and name not in FREES_A_TAPE:
            assert p.nondiff or name in NOT_DIFFERENTIATED, f"{name} has an effect but is differentiable"


def test_every_differentiable_primitive_is_in_the_table():
    """A primitive with derivative rules must be named in some row's prims or grad_prims, so
    that test_derivative_rules runs its rules."""
    covered = {p for c in CASES for p in c.prims + c.grad_prims}
    # copy is emitted by vjp_split only when an augmented forward returns an input unchanged
    exempt = {"copy"}
    diff = {n for n, p in all_prims().items() if not p.nondiff and n not in NOT_DIFFERENTIATED}
    missing = diff - covered - exempt
    assert not missing, f"no row of CASES exercises {sorted(missing)}"

"""Scalar partial derivatives of elementwise primitives, shared by jvp and vjp (as Futhark's
AD/Derivatives.hs): partials(b, ins, out) -> one IR value per input (None: no derivative).
Each partial is a value broadcastable to the output's shape."""

from __future__ import annotations

from ..prims import ops


def _one(b, x):
    return ops.like(b, x, 1.0)


def _zero_where(b, cond, x):
    return ops.select(b, cond, ops.like(b, x, 0.0), x)


def sign(b, x):
    """1, -1, or 0 at 0 (so that abs has derivative 0 there)."""
    zero = ops.like(b, x, 0.0)
    pos = ops.emit(b, "gt", x, zero)
    neg = ops.emit(b, "lt", x, zero)
    one = ops.like(b, x, 1.0)
    return ops.select(b, pos, one, ops.select(b, neg, ops.neg(b, one), zero))


def pow_partials(b, x, y, z):
    """d(x**y): at x == 0 the derivative w.r.t. y is 0, and w.r.t. x too when y == 0."""
    zero = ops.like(b, x, 0.0)
    x_zero = ops.emit(b, "eq", x, zero)
    y_zero = ops.emit(b, "eq", y, zero)
    ym1 = ops.sub(b, y, ops.like(b, y, 1.0))
    dx = ops.mul(b, y, ops.emit(b, "pow", x, ym1))
    dx = _zero_where(b, ops.emit(b, "and", x_zero, y_zero), dx)
    safe_x = ops.select(b, x_zero, ops.like(b, x, 1.0), x)
    dy = _zero_where(b, x_zero, ops.mul(b, z, ops.emit(b, "log", safe_x)))
    return [dx, dy]


PARTIALS = {
    "add": lambda b, x, y, z: [None, None],  # linear: handled directly, see LINEAR
    "neg": lambda b, x, z: [None],
    "mul": lambda b, x, y, z: [y, x],
    "div": lambda b, x, y, z: [ops.div(b, _one(b, y), y), ops.neg(b, ops.div(b, z, y))],
    "exp": lambda b, x, z: [z],
    "log": lambda b, x, z: [ops.div(b, _one(b, x), x)],
    "log1p": lambda b, x, z: [ops.div(b, _one(b, x), ops.add(b, _one(b, x), x))],
    "sqrt": lambda b, x, z: [ops.div(b, ops.like(b, z, 0.5), z)],
    "sin": lambda b, x, z: [ops.emit(b, "cos", x)],
    "cos": lambda b, x, z: [ops.neg(b, ops.emit(b, "sin", x))],
    "tanh": lambda b, x, z: [ops.sub(b, _one(b, z), ops.mul(b, z, z))],
    "sigmoid": lambda b, x, z: [ops.mul(b, z, ops.sub(b, _one(b, z), z))],
    "abs": lambda b, x, z: [sign(b, x)],
    "pow": lambda b, x, y, z: pow_partials(b, x, y, z),
    "mod": lambda b, x, y, z: [_one(b, x), ops.neg(b, ops.emit(b, "floordiv", x, y))],
}

# linear ops: d(out) = sum of SIGNS[k] * d(in_k)
LINEAR = {"add": (1, 1), "sub": (1, -1), "neg": (-1,)}

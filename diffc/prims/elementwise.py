"""Elementwise primitives: arithmetic, math functions, comparisons, logic, select, convert.

All take operands of one dtype (the specialiser inserts `convert` to promote) and broadcast
as NumPy does. Each is declared by one `_ew` call: its name, its dtype rule, its scalar
lowering (an LLVM instruction sequence on one element), its NumPy fold for known integers and
booleans, and its facts: its partial derivatives (its jvp and vjp are built from them), its
cost when fused, and what the passes may do with it (the fields of ir/prim.py's Prim)."""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from ..errors import ShapeError, TypeError_
from ..lower import vmath
from ..lower.emit import reg_type
from ..lower.emit import scalar_add as _add
from ..typesys import DType, TensorType, broadcast_shapes
from . import ops
from .core import Kind, primitive

# --- shape and dtype rules ---------------------------------------------------------------------


def _broadcast(in_types) -> tuple[int, ...]:
    shape = broadcast_shapes(*(t.shape for t in in_types))
    if shape is None:
        raise ShapeError("shapes do not broadcast: " + " vs ".join(str(t) for t in in_types))
    return shape


def _same_dtype(name, in_types, allowed):
    dts = {t.dtype for t in in_types}
    if len(dts) != 1:
        raise TypeError_(f"`{name}` needs operands of one dtype, got " + ", ".join(str(t) for t in in_types))
    dt = dts.pop()
    if dt not in allowed:
        raise TypeError_(f"`{name}` is not defined on {dt}")
    return dt


FLOATS = (DType.F32, DType.F64)
NUMERIC = (DType.I64, DType.F32, DType.F64)
BOOLS = (DType.BOOL,)


def _rule(allowed, out_dtype=None):
    def shape(in_types, _name="?"):
        dt = _same_dtype(_name, in_types, allowed)
        return [TensorType(out_dtype or dt, _broadcast(in_types))]

    return shape


def _lower_ew(scalar):
    def lower(em, eqn, ins):
        dt = eqn.inputs[0].type.dtype
        return [em.elementwise(eqn.outs[0].type, ins, lambda *xs: scalar(em, dt, *xs), eqn.outs[0])]

    return lower


def _fold_with(fn):
    def fold(*xs, **params):
        with np.errstate(all="ignore"):
            return [fn(*xs)]

    return fold


def _ew(name, allowed, scalar, npfn, out_dtype=None, **facts):
    """Declare one elementwise primitive (facts: more fields of its Prim). Its jvp and vjp are
    built from its partials, or its linearity, unless given. npfn folds known values: only
    integer and boolean ones are folded (ir/build.py), so a float-only op has none."""
    rule = _rule(allowed, out_dtype)
    partials, linear = facts.get("partials"), facts.get("linear")
    if partials or linear:
        facts.setdefault("vjp", _ew_vjp(partials, linear))
        facts.setdefault("jvp", _ew_jvp(partials, linear))
    facts.setdefault("lower", _lower_ew(scalar))
    return primitive(
        name,
        shape=lambda ts, **_: rule(ts, _name=name),
        kind=Kind.ELEMENTWISE,
        fold=_fold_with(npfn) if npfn is not None else None,
        fusable=True,
        reads_lazy=True,
        **facts,
    )


# --- scalar lowerings ----------------------------------------------------------------------------


def _is_f(dt):
    return dt.is_float


def _sub(em, dt, a, b):
    return em.b.fsub(a, b) if _is_f(dt) else em.b.sub(a, b)


def _mul(em, dt, a, b):
    return em.b.fmul(a, b) if _is_f(dt) else em.b.mul(a, b)


def _div(em, dt, a, b):
    return em.b.fdiv(a, b)


def _sign_differs(em, dt, r, b):
    """r != 0 and sign(r) != sign(b): where C-style remainder must be corrected to floor."""
    B = em.b
    if _is_f(dt):
        zero = ir.Constant(r.type, 0.0)
        nz = B.fcmp_unordered("!=", r, zero)
        return B.and_(nz, B.xor(B.fcmp_ordered("<", r, zero), B.fcmp_ordered("<", b, zero)))
    zero = ir.Constant(r.type, 0)
    nz = B.icmp_signed("!=", r, zero)
    return B.and_(nz, B.xor(B.icmp_signed("<", r, zero), B.icmp_signed("<", b, zero)))


def _safe_int_divisor(em, b):
    """The divisor sdiv/srem may take: 1 where b is 0 or -1, whose results are patched by
    _int_divide (LLVM's sdiv and srem are undefined there: x86 traps with SIGFPE)."""
    B = em.b
    is_zero = B.icmp_signed("==", b, ir.Constant(b.type, 0))
    is_minus_one = B.icmp_signed("==", b, ir.Constant(b.type, -1))
    return is_zero, is_minus_one, B.select(B.or_(is_zero, is_minus_one), ir.Constant(b.type, 1), b)


def _int_divide(em, a, b):
    """Integer a // b and a % b rounded to the floor, as NumPy does them: division by zero gives
    0 and 0, and INT64_MIN // -1 wraps to INT64_MIN (x // -1 is -x, wrapping; x % -1 is 0)."""
    B = em.b
    zero = ir.Constant(a.type, 0)
    is_zero, is_minus_one, d = _safe_int_divisor(em, b)
    q, r = B.sdiv(a, d), B.srem(a, d)
    floor = _sign_differs(em, DType.I64, r, d)
    q = B.select(floor, B.sub(q, ir.Constant(q.type, 1)), q)
    r = B.select(floor, B.add(r, d), r)
    q = B.select(is_minus_one, B.neg(a), B.select(is_zero, zero, q))
    return q, B.select(is_zero, zero, r)


def _mod(em, dt, a, b):
    B = em.b
    if _is_f(dt):
        r = B.frem(a, b)
        return B.select(_sign_differs(em, dt, r, b), B.fadd(r, b), r)
    return _int_divide(em, a, b)[1]


def _floordiv(em, dt, a, b):
    B = em.b
    if _is_f(dt):
        # NumPy: (a - a mod b) / b, rounded; floor(a / b) agrees except at rounding edges
        r = _mod(em, dt, a, b)
        q = em.intrinsic("llvm.round", a.type, [B.fdiv(B.fsub(a, r), b)])
        return B.select(B.fcmp_ordered("==", b, ir.Constant(b.type, 0.0)), B.fdiv(a, b), q)
    return _int_divide(em, a, b)[0]


def _ipow(em, a, n):
    """a ** n for integers by repeated squaring (0 for negative n, as integer NumPy can't)."""
    B = em.b
    res, base, exp = em.alloca(a.type), em.alloca(a.type), em.alloca(a.type)
    B.store(ir.Constant(a.type, 1), res)
    B.store(a, base)
    B.store(n, exp)
    head, body, done = em.block("ipow.head"), em.block("ipow.body"), em.block("ipow.end")
    B.branch(head)
    B.position_at_end(head)
    e = B.load(exp)
    B.cbranch(B.icmp_signed(">", e, ir.Constant(a.type, 0)), body, done)
    B.position_at_end(body)
    bs, r = B.load(base), B.load(res)
    odd = B.trunc(e, ir.IntType(1))
    B.store(B.select(odd, B.mul(r, bs), r), res)
    B.store(B.mul(bs, bs), base)
    B.store(B.ashr(e, ir.Constant(a.type, 1)), exp)
    B.branch(head)
    B.position_at_end(done)
    out = B.load(res)
    # n < 0: the exact value 1 / a**-n truncated toward zero: 1 for a == 1, +-1 for a == -1, else 0
    one, minus_one = ir.Constant(a.type, 1), ir.Constant(a.type, -1)
    odd = B.trunc(n, ir.IntType(1))
    neg_result = B.select(
        B.icmp_signed("==", a, one),
        one,
        B.select(B.icmp_signed("==", a, minus_one), B.select(odd, minus_one, one), ir.Constant(a.type, 0)),
    )
    return B.select(B.icmp_signed("<", n, ir.Constant(a.type, 0)), neg_result, out)


def _pow_with(kernel):
    def scalar(em, dt, a, b):
        """Floats: a cheaper exact form where the exponent is a constant (vmath.pow_constant:
        `x ** 3` is (x * x) * x, its derivative's x ** 2 x * x), else `kernel`."""
        if not _is_f(dt):
            return _ipow(em, a, b)
        y = _known_float(b)
        v = None if y is None else vmath.pow_constant(em.b, a, y)
        return kernel(em, a, b) if v is None else v

    return scalar


def _pow_lower():
    """Arrays by lower/vmath.py's branch-free kernel, which the loop vectoriser turns into SIMD
    code (4.5 ns an element in f64; libm's pow, about 11, kept the loop scalar); numbers by libm's
    pow, whose latency is half the kernel's (a scalar iterate of x ** p, 55 against 103 ns a
    step; f32 37 against 107), the kernel's double-doubles being one long chain."""
    inline = _lower_ew(_pow_with(lambda em, a, b: em.intrinsic("llvm.pow", a.type, [a, b])))
    vector = _lower_ew(_pow_with(lambda em, a, b: vmath.pow(em.b, a, b)))

    def lower(em, eqn, ins):
        return (inline if eqn.outs[0].type.rank == 0 and not em.rows_apart else vector)(em, eqn, ins)

    return lower


_KNOWN_DEPTH = 8


def _known_float(v, depth=_KNOWN_DEPTH):
    """The value of a float register computed from constants alone, or None: the IR folds no
    float arithmetic (ir/build.py's fold_known), so that `x ** 3`'s exponent reaches the lowering
    as `sitofp 3` and its derivative's as `(sitofp 3) - 1.0`, which this evaluates as LLVM will,
    rounded to the register's type."""
    np_t = {"double": np.float64, "float": np.float32}.get(str(v.type))
    if np_t is None or depth == 0:
        return None
    if isinstance(v, ir.Constant):
        return np_t(v.constant) if isinstance(v.constant, (int, float)) else None
    if not isinstance(v, ir.Instruction):
        return None
    op, args = v.opname, list(v.operands)
    if op == "sitofp" and isinstance(args[0], ir.Constant) and isinstance(args[0].constant, int):
        return np_t(args[0].constant)
    known = [_known_float(a, depth - 1) for a in args]
    if any(k is None for k in known):
        return None
    with np.errstate(all="ignore"):
        if op in ("fpext", "fptrunc"):
            return np_t(known[0])
        if op == "fneg":
            return np_t(-known[0])
        fn = {"fadd": np.add, "fsub": np.subtract, "fmul": np.multiply, "fdiv": np.divide}.get(op)
        return None if fn is None else np_t(fn(*known))


def _guarded_mul_scalar(em, dt, t, p):
    """t * p, but 0 where t is 0 even if p is inf or NaN."""
    zero = ir.Constant(t.type, 0.0)
    return em.b.select(em.b.fcmp_ordered("==", t, zero), zero, em.b.fmul(t, p))


def _maximum(em, dt, a, b):
    B = em.b
    if _is_f(dt):  # NaN propagates; at a tie the first operand is selected
        take_a = B.or_(B.fcmp_ordered(">=", a, b), B.fcmp_unordered("uno", a, a))
    else:
        take_a = B.icmp_signed(">=", a, b)
    return B.select(take_a, a, b)


def _minimum(em, dt, a, b):
    B = em.b
    if _is_f(dt):
        take_a = B.or_(B.fcmp_ordered("<=", a, b), B.fcmp_unordered("uno", a, a))
    else:
        take_a = B.icmp_signed("<=", a, b)
    return B.select(take_a, a, b)


def _neg(em, dt, a):
    return em.b.fneg(a) if _is_f(dt) else em.b.neg(a)


def _abs(em, dt, a):
    if _is_f(dt):
        return em.intrinsic("llvm.fabs", a.type, [a])
    return em.b.select(em.b.icmp_signed("<", a, ir.Constant(a.type, 0)), em.b.neg(a), a)


def _intr(name):
    return lambda em, dt, a: em.intrinsic(name, a.type, [a])


def _vmath(kernel):
    """A vectorisable kernel of lower/vmath.py, written for f64 and f32 (f32 computed in f32,
    twice the elements to a vector)."""
    return lambda em, dt, a: kernel(em.b, a)


def _vmath_f64(kernel):
    """A kernel of lower/vmath.py written for f64 only: f32 is computed in f64 and rounded."""

    def f(em, dt, a):
        if dt is DType.F64:
            return kernel(em.b, a)
        return em.b.fptrunc(kernel(em.b, em.b.fpext(a, ir.DoubleType())), a.type)

    return f


def _cmp(op):
    def f(em, dt, a, b):
        if _is_f(dt):
            return em.b.fcmp_unordered(op, a, b) if op == "!=" else em.b.fcmp_ordered(op, a, b)
        return em.b.icmp_signed(op, a, b)

    return f


def _select(em, eqn, ins):
    return [em.elementwise(eqn.outs[0].type, ins, lambda c, a, b: em.b.select(c, a, b), eqn.outs[0])]


def _select_shape(in_types, **_):
    c, a, b = in_types
    if c.dtype is not DType.BOOL:
        raise TypeError_(f"the condition of `where` must be bool, got {c}")
    if a.dtype != b.dtype:
        raise TypeError_(f"`where` needs branches of one dtype, got {a} and {b}")
    return [TensorType(a.dtype, _broadcast(in_types))]


# --- derivative rules ------------------------------------------------------------------------------
# Generic rules built from a primitive's scalar partial derivatives (as Futhark's
# AD/Derivatives.hs): partials(b, *ins, out) -> one value per input (None: no derivative), each
# broadcastable to the output's shape; masks for the selecting ops.


def _float(x) -> bool:
    return x.type.dtype.is_float


def _one(b, x):
    return ops.like(b, x, 1.0)


def _zero_where(b, cond, x):
    return ops.select(b, cond, ops.like(b, x, 0.0), x)


def _sign(b, x):
    """1, -1, or 0 at 0 (so that abs has derivative 0 there)."""
    zero = ops.like(b, x, 0.0)
    pos = b.emit1(gt_p, [x, zero])
    neg = b.emit1(lt_p, [x, zero])
    one = ops.like(b, x, 1.0)
    return ops.select(b, pos, one, ops.select(b, neg, ops.neg(b, one), zero))


def _pow_partials(b, x, y, z):
    """d(x**y): at x == 0 the derivative w.r.t. y is 0, and w.r.t. x too when y == 0."""
    zero = ops.like(b, x, 0.0)
    x_zero = b.emit1(eq_p, [x, zero])
    y_zero = b.emit1(eq_p, [y, zero])
    ym1 = ops.sub(b, y, ops.like(b, y, 1.0))
    dx = ops.mul(b, y, b.emit1(pow_p, [x, ym1]))
    dx = _zero_where(b, b.emit1(and_p, [x_zero, y_zero]), dx)
    safe_x = ops.select(b, x_zero, ops.like(b, x, 1.0), x)
    dy = _zero_where(b, x_zero, ops.mul(b, z, b.emit1(log_p, [safe_x])))
    return [dx, dy]


def _fit(b, t, shape):
    """A tangent of an operand, broadcast to the output's shape."""
    return ops.broadcast(b, t, shape) if t.type.shape != tuple(shape) else t


def _guarded_mul(b, t, p):
    """t * p, and exactly 0 where t is 0, whatever p (See Note [Structural zeros] in ad/vjp.py).
    A partial known to be finite (a constant) needs no guard; the guards pass
    (optimise/guards.py) drops the others where t cannot be a structural zero."""
    if p.known is not None and np.all(np.isfinite(p.known)):
        return ops.mul(b, t, p)
    return b.emit1(guarded_mul_p, [t, p])


def _ew_vjp(partials, linear):
    def vjp(ctx, params, ins, outs, cts):
        b = ctx.b
        (g,) = cts
        if linear:
            return [
                ops.unbroadcast(b, g if s == 1 else ops.neg(b, g), x.type.shape) if _float(x) else None
                for s, x in zip(linear, ins)
            ]
        res = []
        for x, p in zip(ins, partials(b, *ins, outs[0])):
            if p is None or not _float(x):
                res.append(None)
                continue
            res.append(ops.unbroadcast(b, _guarded_mul(b, g, p), x.type.shape))
        return res

    return vjp


def _ew_jvp(partials, linear):
    def jvp(ctx, params, ins, outs, tangents):
        b = ctx.b
        shape = outs[0].type.shape
        if linear:
            terms = [t if s == 1 else ops.neg(b, t) for s, t in zip(linear, tangents) if t is not None]
        else:
            ps = partials(b, *ins, outs[0])
            terms = [_guarded_mul(b, t, p) for t, p in zip(tangents, ps) if t is not None and p is not None]
        total = ops.add_all(b, terms)
        return [None if total is None else _fit(b, total, shape)]

    return jvp


def _trig_vjp(partials):
    """sin and cos of a scalar: the partial derivative (cos x, -sin x) is computed in the
    forward pass, beside the value, and kept as the residual. In a loop over scalars (an ODE
    step) LLVM then computes both with one sincos call, instead of a sin forward and a cos
    backward. For arrays the partial is computed in the backward pass, as for other ops.
    Returns (vjp_fwd, vjp)."""
    generic = _ew_vjp(partials, None)

    def fwd(ctx, eqn, ins, act):
        b = ctx.b
        (x,) = ins
        (y,) = b.emit(eqn.prim, ins, eqn.span)
        if x.type.rank:
            return [y], ("ins", ins)
        (partial,) = partials(b, x, y)
        return [y], ("partial", partial)

    def vjp(ctx, params, aux, outs, cts):
        b = ctx.b
        kind, v = aux
        if kind == "ins":
            return generic(ctx, params, v, outs, cts)
        return [_guarded_mul(b, cts[0], v)]

    return fwd, vjp


def _guarded_mul_vjp(ctx, params, ins, outs, cts):
    """The cotangent of t is guarded by g (p may be inf), that of p by t (the first-order
    cotangent, the structural zero: where it is 0, nothing flows to the partial)."""
    b = ctx.b
    (g,) = cts
    t, p = ins
    return [
        ops.unbroadcast(b, b.emit1(guarded_mul_p, [g, p]), t.type.shape),
        ops.unbroadcast(b, b.emit1(guarded_mul_p, [t, g]), p.type.shape),
    ]


def _guarded_mul_jvp(ctx, params, ins, outs, tangents):
    b = ctx.b
    t, p = ins
    dt, dp = tangents
    terms = []
    if dt is not None:
        terms.append(b.emit1(guarded_mul_p, [dt, p]))
    if dp is not None:
        terms.append(b.emit1(guarded_mul_p, [t, dp]))
    total = ops.add_all(b, terms)
    return [None if total is None else _fit(b, total, outs[0].type.shape)]


def _choice_mask(b, take_first, x, y):
    """Where max/min take the first operand (NaN propagates; ties pick the first): take_first
    is ge (max) or le (min)."""
    take = b.emit1(take_first, [x, y])
    return b.emit1(or_p, [take, b.emit1(ne_p, [x, x])])


def _choice_vjp(take_first):
    def vjp(ctx, params, ins, outs, cts):
        b = ctx.b
        (g,) = cts
        x, y = ins
        zero = ops.like(b, g, 0.0)
        m = _choice_mask(b, take_first(), x, y)
        return [
            ops.unbroadcast(b, ops.select(b, m, g, zero), x.type.shape) if _float(x) else None,
            ops.unbroadcast(b, ops.select(b, m, zero, g), y.type.shape) if _float(y) else None,
        ]

    return vjp


def _choice_jvp(take_first):
    def jvp(ctx, params, ins, outs, tangents):
        b = ctx.b
        x, y = ins
        tx, ty = tangents
        if tx is None and ty is None:
            return [None]
        shape = outs[0].type.shape
        tx = _fit(b, tx, shape) if tx is not None else ops.zeros(b, outs[0].type)
        ty = _fit(b, ty, shape) if ty is not None else ops.zeros(b, outs[0].type)
        return [ops.select(b, _choice_mask(b, take_first(), x, y), tx, ty)]

    return jvp


def _select_vjp(ctx, params, ins, outs, cts):
    b = ctx.b
    (g,) = cts
    c, x, y = ins
    zero = ops.like(b, g, 0.0)
    return [
        None,
        ops.unbroadcast(b, ops.select(b, c, g, zero), x.type.shape),
        ops.unbroadcast(b, ops.select(b, c, zero, g), y.type.shape),
    ]


def _select_jvp(ctx, params, ins, outs, tangents):
    b = ctx.b
    c, x, y = ins
    _, tx, ty = tangents
    if tx is None and ty is None:
        return [None]
    shape = outs[0].type.shape
    tx = _fit(b, tx, shape) if tx is not None else ops.zeros(b, outs[0].type)
    ty = _fit(b, ty, shape) if ty is not None else ops.zeros(b, outs[0].type)
    return [ops.select(b, c, tx, ty)]


def _convert_vjp(ctx, params, ins, outs, cts):
    b = ctx.b
    (x,) = ins
    return [ops.convert(b, cts[0], x.type.dtype) if _float(x) and _float(outs[0]) else None]


def _convert_jvp(ctx, params, ins, outs, tangents):
    b = ctx.b
    (t,) = tangents
    return [ops.convert(b, t, outs[0].type.dtype) if t is not None and _float(outs[0]) else None]


# --- intervals of integer scalars (ir/build.py): (lo, hi) means lo <= v < hi ---------------------


def _add_interval(a, b):
    return None if a is None or b is None else (a[0] + b[0], a[1] + b[1] - 1)


def _sub_interval(a, b):
    return None if a is None or b is None else (a[0] - b[1] + 1, a[1] - b[0])


def _mul_interval(a, b):
    if a is None or b is None:
        return None
    ends = [a[0] * b[0], a[0] * (b[1] - 1), (a[1] - 1) * b[0], (a[1] - 1) * (b[1] - 1)]
    return (min(ends), max(ends) + 1)


def _trig_lower(kernel, array_kernel):
    """sin and cos of a number (latency-bound code, an ODE step) by the branched kernels of
    lower/vmath.py, about half libm's latency (the branch-free ones there: ode_rk4's forward
    29.8 -> 51 us); of arrays by its branch-free ones, so that the loop vectorises (the
    branched kernels' branches, which random arguments mispredict, and libm's calls kept it
    scalar)."""
    inline, vector = _lower_ew(_vmath_f64(kernel)), _lower_ew(_vmath_f64(array_kernel))

    def lower(em, eqn, ins):
        return (inline if eqn.outs[0].type.rank == 0 and not em.rows_apart else vector)(em, eqn, ins)

    return lower


# --- declarations --------------------------------------------------------------------------------
# remat: cheap and exact, recomputed by a backward pass rather than taped (ad/vjp.py)
# keeps_zeros: zero only where an input is (optimise/guards.py); cost: when fusion recomputes

add_p = _ew(
    "add",
    NUMERIC,
    _add,
    np.add,
    linear=(1, 1),
    remat=True,
    keeps_zeros=True,
    interval=_add_interval,
    accumulate_as="add",
)
sub_p = _ew("sub", NUMERIC, _sub, np.subtract, linear=(1, -1), remat=True, keeps_zeros=True, interval=_sub_interval)
mul_p = _ew(
    "mul",
    NUMERIC,
    _mul,
    np.multiply,
    partials=lambda b, x, y, z: [y, x],
    remat=True,
    keeps_zeros=True,
    interval=_mul_interval,
)
div_p = _ew(
    "div",
    FLOATS,
    _div,
    None,
    partials=lambda b, x, y, z: [ops.div(b, _one(b, y), y), ops.neg(b, ops.div(b, z, y))],
    keeps_zeros=True,
)
# piecewise constant: its derivative is zero wherever it exists
floordiv_p = _ew("floordiv", NUMERIC, _floordiv, np.floor_divide, nondiff=True)
mod_p = _ew(
    "mod",
    NUMERIC,
    _mod,
    np.mod,
    partials=lambda b, x, y, z: [_one(b, x), ops.neg(b, b.emit1(floordiv_p, [x, y]))],
)


def _np_pow(a, b):
    if a.dtype.kind != "i":
        return np.power(a, b)
    pos = np.power(a, np.maximum(b, 0))
    neg = np.where(a == 1, 1, np.where(a == -1, np.where(b % 2 == 1, -1, 1), 0))
    return np.where(b >= 0, pos, neg)


pow_p = _ew("pow", NUMERIC, None, _np_pow, lower=_pow_lower(), partials=_pow_partials, cost=20, keeps_zeros=True)
# a derivative's product t * p of a tangent or cotangent t and a partial p that may be infinite,
# 0 where t is 0: see Note [Structural zeros] in ad/vjp.py
guarded_mul_p = _ew(
    "guarded_mul",
    FLOATS,
    _guarded_mul_scalar,
    None,
    vjp=_guarded_mul_vjp,
    jvp=_guarded_mul_jvp,
    keeps_zeros=True,
)
max_p = _ew(
    "max", NUMERIC, _maximum, np.maximum, vjp=_choice_vjp(lambda: ge_p), jvp=_choice_jvp(lambda: ge_p), remat=True
)
min_p = _ew(
    "min", NUMERIC, _minimum, np.minimum, vjp=_choice_vjp(lambda: le_p), jvp=_choice_jvp(lambda: le_p), remat=True
)
neg_p = _ew("neg", NUMERIC, _neg, np.negative, linear=(-1,), remat=True, keeps_zeros=True)
abs_p = _ew("abs", NUMERIC, _abs, np.abs, partials=lambda b, x, z: [_sign(b, x)], remat=True, keeps_zeros=True)

exp_p = _ew("exp", FLOATS, _vmath(vmath.exp), None, partials=lambda b, x, z: [z], cost=12, keeps_zeros=True)
log_p = _ew(
    "log",
    FLOATS,
    _vmath(vmath.log),
    None,
    partials=lambda b, x, z: [ops.div(b, _one(b, x), x)],
    cost=12,
    keeps_zeros=True,
)
log1p_p = _ew(
    "log1p",
    FLOATS,
    _vmath(vmath.log1p),
    None,
    partials=lambda b, x, z: [ops.div(b, _one(b, x), ops.add(b, _one(b, x), x))],
    cost=20,
    keeps_zeros=True,
)
sqrt_p = _ew(
    "sqrt",
    FLOATS,
    _intr("llvm.sqrt"),
    None,
    partials=lambda b, x, z: [ops.div(b, ops.like(b, z, 0.5), z)],
    keeps_zeros=True,
)


def _sin_partials(b, x, z):
    return [b.emit1(cos_p, [x])]


def _cos_partials(b, x, z):
    return [ops.neg(b, b.emit1(sin_p, [x]))]


_sin_vjp_fwd, _sin_vjp = _trig_vjp(_sin_partials)
_cos_vjp_fwd, _cos_vjp = _trig_vjp(_cos_partials)
sin_p = _ew(
    "sin",
    FLOATS,
    None,
    None,
    lower=_trig_lower(vmath.sin, vmath.sin_array),
    partials=_sin_partials,
    vjp_fwd=_sin_vjp_fwd,
    vjp=_sin_vjp,
    cost=20,
    keeps_zeros=True,
)
cos_p = _ew(
    "cos",
    FLOATS,
    None,
    None,
    lower=_trig_lower(vmath.cos, vmath.cos_array),
    partials=_cos_partials,
    vjp_fwd=_cos_vjp_fwd,
    vjp=_cos_vjp,
    cost=20,
    keeps_zeros=True,
)
tanh_p = _ew(
    "tanh",
    FLOATS,
    _vmath(vmath.tanh),
    None,
    partials=lambda b, x, z: [ops.sub(b, _one(b, z), ops.mul(b, z, z))],
    cost=14,
    keeps_zeros=True,
)
sigmoid_p = _ew(
    "sigmoid",
    FLOATS,
    _vmath(vmath.sigmoid),
    None,
    partials=lambda b, x, z: [ops.mul(b, z, ops.sub(b, _one(b, z), z))],
    cost=14,
    keeps_zeros=True,
)
erf_p = _ew(
    "erf",
    FLOATS,
    _vmath(vmath.erf),
    None,
    partials=lambda b, x, z: [
        ops.mul(b, ops.like(b, x, 2 / math.sqrt(math.pi)), b.emit1(exp_p, [ops.neg(b, ops.mul(b, x, x))]))
    ],
    cost=36,  # an exp and two polynomials (lower/vmath.py)
    keeps_zeros=True,
)


# rounding: piecewise constant, so nondiff (a derivative of 0, as JAX gives); LLVM's intrinsics
# vectorise (roundeven rounds half to even, as NumPy's round)
floor_p = _ew("floor", FLOATS, _intr("llvm.floor"), None, nondiff=True, remat=True)
ceil_p = _ew("ceil", FLOATS, _intr("llvm.ceil"), None, nondiff=True, remat=True)
round_p = _ew("round", FLOATS, _intr("llvm.roundeven"), None, nondiff=True, remat=True)


def _signum(em, dt, a):
    """-1, 0 or 1 in a's dtype; NaN stays NaN and sign(-0.0) is 0.0, as in NumPy."""
    B = em.b
    one, minus_one, zero = (em.const(dt, v) for v in (1, -1, 0))
    if _is_f(dt):
        pos, neg = B.fcmp_ordered(">", a, zero), B.fcmp_ordered("<", a, zero)
        v = B.select(pos, one, B.select(neg, minus_one, zero))
        return B.select(B.fcmp_unordered("uno", a, a), a, v)
    return B.select(B.icmp_signed(">", a, zero), one, B.select(B.icmp_signed("<", a, zero), minus_one, zero))


sign_p = _ew("sign", NUMERIC, _signum, np.sign, nondiff=True, remat=True, keeps_zeros=True)


def _tan(em, dt, a):
    """lower/vmath.py's kernel, which calls libm's tan beyond its range."""
    return _vmath_f64(lambda b, x: vmath.tan(b, x, lambda v: em.call_extern("tan", v.type, [v])))(em, dt, a)


# its derivative 1 + tan^2 from the value
tan_p = _ew(
    "tan",
    FLOATS,
    _tan,
    None,
    partials=lambda b, x, z: [ops.add(b, _one(b, z), ops.mul(b, z, z))],
    cost=20,
    keeps_zeros=True,
)

_BOOL = {"out_dtype": DType.BOOL, "nondiff": True, "remat": True}
lt_p = _ew("lt", NUMERIC, _cmp("<"), np.less, **_BOOL)
le_p = _ew("le", NUMERIC, _cmp("<="), np.less_equal, **_BOOL)
gt_p = _ew("gt", NUMERIC, _cmp(">"), np.greater, **_BOOL)
ge_p = _ew("ge", NUMERIC, _cmp(">="), np.greater_equal, **_BOOL)
eq_p = _ew("eq", NUMERIC + BOOLS, _cmp("=="), np.equal, **_BOOL)
ne_p = _ew("ne", NUMERIC + BOOLS, _cmp("!="), np.not_equal, **_BOOL)
and_p = _ew("and", BOOLS, lambda em, dt, a, b: em.b.and_(a, b), np.logical_and, **_BOOL)
or_p = _ew("or", BOOLS, lambda em, dt, a, b: em.b.or_(a, b), np.logical_or, **_BOOL)
not_p = _ew("not", BOOLS, lambda em, dt, a: em.b.not_(a), np.logical_not, **_BOOL)
isnan_p = _ew("isnan", FLOATS, lambda em, dt, a: em.b.fcmp_unordered("uno", a, a), None, **_BOOL)
isfinite_p = _ew(
    "isfinite",
    FLOATS,
    lambda em, dt, a: em.b.fcmp_ordered("<", _abs(em, dt, a), em.const(dt, np.inf)),
    None,
    **_BOOL,
)

select_p = primitive(
    "select",
    shape=_select_shape,
    kind=Kind.ELEMENTWISE,
    lower=_select,
    vjp=_select_vjp,
    jvp=_select_jvp,
    fold=_fold_with(np.where),
    fusable=True,
    reads_lazy=True,
    remat=True,
)


I64_MIN = -(2**63)


def _convert_scalar(em, src: DType, dst: DType, a):
    B = em.b
    ty = reg_type(dst)
    if src == dst:
        return a
    if dst is DType.BOOL:
        return (
            B.fcmp_unordered("!=", a, ir.Constant(a.type, 0.0))
            if src.is_float
            else B.icmp_signed("!=", a, ir.Constant(a.type, 0))
        )
    if src is DType.BOOL:
        return B.uitofp(a, ty) if dst.is_float else B.zext(a, ty)
    if src.is_float and dst.is_float:
        return B.fptrunc(a, ty) if dst is DType.F32 else B.fpext(a, ty)
    if src.is_float:  # see Note [Float to int]
        lo, hi = ir.Constant(a.type, -(2.0**63)), ir.Constant(a.type, 2.0**63)
        fits = B.and_(B.fcmp_ordered(">=", a, lo), B.fcmp_ordered("<", a, hi))
        return B.select(fits, B.fptosi(a, ty), ir.Constant(ty, I64_MIN))
    return B.sitofp(a, ty)


def _convert_lower(em, eqn, ins):
    src, dst = eqn.inputs[0].type.dtype, eqn.params["dtype"]
    return [em.elementwise(eqn.outs[0].type, ins, lambda a: _convert_scalar(em, src, dst, a), eqn.outs[0])]


convert_p = primitive(
    "convert",
    shape=lambda ts, dtype: [ts[0].with_dtype(dtype)],
    kind=Kind.ELEMENTWISE,
    lower=_convert_lower,
    vjp=_convert_vjp,
    jvp=_convert_jvp,
    fusable=True,
    reads_lazy=True,
    fold=lambda x, dtype: [_float_to_i64(x) if dtype is DType.I64 and x.dtype.kind == "f" else x.astype(dtype.np)],
    # a conversion from floats keeps zeros where they are; one from a mask or integers makes them
    keeps_zeros=lambda eqn: eqn.inputs[0].type.dtype.is_float,
)


def _float_to_i64(x: np.ndarray) -> np.ndarray:
    """i64(x) as the lowering computes it: see Note [Float to int]."""
    fits = (x >= -(2.0**63)) & (x < 2.0**63)  # (false for NaN)
    return np.where(fits, np.trunc(np.where(fits, x, 0)).astype(np.int64), I64_MIN)


def _identity_lower(em, eqn, ins):
    return ins


stop_gradient_p = primitive(
    "stop_gradient",
    shape=lambda ts: [ts[0]],
    kind=Kind.ELEMENTWISE,
    lower=_identity_lower,
    fold=lambda x: [x],
    nondiff=True,
    keeps_zeros=True,
)


# copy: the identity, as a new value (a transform that must not alias an input uses it)
copy_p = primitive(
    "copy",
    shape=lambda ts: [ts[0]],
    kind=Kind.ELEMENTWISE,
    lower=_identity_lower,
    vjp=lambda ctx, params, ins, outs, cts: [cts[0]],
    jvp=lambda ctx, params, ins, outs, ts: [ts[0]],
    fold=lambda x: [x],
    remat=True,
)


# Note [Float to int]
# ~~~~~~~~~~~~~~~~~~~
# i64(x) truncates toward zero. For NaN and for x outside [-2**63, 2**63) LLVM's fptosi is
# poison: the value depended on whether LLVM folded it (a constant gave 0) or the CPU computed
# it (x86 gives INT64_MIN). The lowering selects INT64_MIN for those, as x86 and NumPy on x86
# do, and the fold computes the same, so folded and run-time results agree everywhere.

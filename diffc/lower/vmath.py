"""Math kernels for f64 emitted as plain LLVM IR (no libm calls), accurate to a few ulp over
the whole range (tests/lower/test_vmath.py measures them against NumPy).

exp:   x = k ln2 + r, |r| <= ln2/2 (Cody-Waite with a two-part ln2, fused multiply-adds);
       e^r = 1 + r + r^2 P(r), P of degree 9; 2^k by llvm.ldexp where AVX-512 makes it one
       instruction (vscalefpd), else built in the exponent bits in two halves so that results
       down to the subnormals are right. 1 ulp.
log:   x = 2^e m, m in [sqrt(2)/2, sqrt(2)); log m = 2 atanh(s), s = (m - 1)/(m + 1), |s| < 0.172,
       as fdlibm: a minimax polynomial of degree 7 in s^2, the small terms summed first. 1 ulp.
log1p: log of u = 1 + x rounded, its rounding error folded into m - 1 (one division, as log).
       1 ulp.
tanh:  (1 - q) / (1 + q), q = e^(-2|x|) from exp's reduction and polynomial (no second exp),
       in one of two forms by the size of |x| (see tanh), and the sign put back. 3 ulps.
These have no branches, so that LLVM's loop vectoriser turns a loop of them into SIMD code.
sin, cos: fdlibm's kernels, with branches on the size of the argument (see below).
tan:   sin r / cos r with their reduction; libm's beyond |x| = 4096, behind a branch. 3 ulps."""

from __future__ import annotations

import functools
import math

import llvmlite.binding as llvm
from llvmlite import ir

F64 = ir.DoubleType()
I64 = ir.IntType(64)
I32 = ir.IntType(32)

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # ln2's leading bits: k * LN2_HI is exact for |k| < 2^11
LN2_LO = 1.90821492927058770002e-10
# e^r = 1 + r + r^2 P(r), P of degree 9 interpolating (e^r - 1 - r) / r^2 at the Chebyshev
# nodes of |r| <= ln2/2 (error 0.15 ulp before rounding; SLEEF's degree 10 has one more FMA)
EXP_COEFFS = [
    0.5000000000000001,
    0.16666666666666669,
    0.041666666666624164,
    0.008333333333330065,
    0.0013888888917196719,
    0.00019841269863040545,
    2.4801521322368692e-05,
    2.7557268480310024e-06,
    2.7620075879983367e-07,
    2.5100375832561234e-08,
]


def _c(v: float) -> ir.Constant:
    return ir.Constant(F64, v)


def _fma(b: ir.IRBuilder, x, y, z):
    """x * y + z in one rounding (a fused multiply-add where the CPU has one)."""
    fn = b.module.declare_intrinsic("llvm.fma", [F64], ir.FunctionType(F64, [F64, F64, F64]))
    return b.call(fn, [x, y, z])


def _horner(b: ir.IRBuilder, coeffs, x):
    acc = _c(coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = _fma(b, acc, x, _c(c))
    return acc


def _intrinsic(b, name, x):
    fn = b.module.declare_intrinsic(name, [x.type])
    return b.call(fn, [x])


def _pow2(b, k):
    """2.0 ** k for an i64 k in [-1022, 1023], from its exponent bits."""
    return b.bitcast(b.shl(b.add(k, ir.Constant(I64, 1023)), ir.Constant(I64, 52)), F64)


def exp(b: ir.IRBuilder, x):
    xc = b.select(b.fcmp_ordered(">", x, _c(709.8)), _c(709.8), x)
    xc = b.select(b.fcmp_ordered("<", xc, _c(-746.0)), _c(-746.0), xc)
    kf = _intrinsic(b, "llvm.rint", b.fmul(xc, _c(LOG2E)))
    nk = b.fneg(kf)
    r = _fma(b, nk, _c(LN2_LO), _fma(b, nk, _c(LN2_HI), xc))
    p = _fma(b, b.fmul(r, r), _horner(b, EXP_COEFFS, r), b.fadd(r, _c(1.0)))
    if _scalef():  # p 2^k in one instruction, rounded once, overflowing to inf, underflowing to 0
        fn = b.module.declare_intrinsic("llvm.ldexp", [F64, I32], ir.FunctionType(F64, [F64, I32]))
        y = b.call(fn, [p, b.fptosi(kf, I32)])
    else:
        k = b.fptosi(kf, I64)
        k1 = b.ashr(k, ir.Constant(I64, 1))  # 2^k = 2^k1 * 2^(k - k1), each factor a normal number
        y = b.fmul(b.fmul(p, _pow2(b, k1)), _pow2(b, b.sub(k, k1)))
        y = b.select(b.fcmp_ordered(">", x, _c(709.782712893384)), _c(math.inf), y)
        y = b.select(b.fcmp_ordered("<", x, _c(-745.1332191019412)), _c(0.0), y)
    return b.select(b.fcmp_unordered("uno", x, x), x, y)


@functools.cache
def _scalef() -> bool:
    """Whether this CPU has AVX-512's vscalefpd, to which LLVM lowers llvm.ldexp on vectors
    (elsewhere ldexp is a libm call per element, slower than building 2^k from its bits)."""
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


# log(1 + f) = 2 atanh(s) = f - (f^2/2 - s (f^2/2 + R)), s = f / (2 + f), R = z P(z), z = s^2:
# fdlibm's minimax P (Lg1..Lg7) for |s| < 0.1716, error below 2^-58.9
LOG_COEFFS = [
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
]


def _log_positive(b: ir.IRBuilder, u, c=None):
    """log(u + c) for a positive finite u, c (if given) the rounding error of u, at most half
    its ulp: u = 2^e m, m in [sqrt(2)/2, sqrt(2)), and log(1 + f) with f = m - 1 + c 2^-e as
    fdlibm's log does (one division, a polynomial of degree 7). Inf, NaN, 0 and u < 0 are the
    callers' to select."""
    tiny = b.fcmp_ordered("<", u, _c(2.2250738585072014e-308))  # subnormals: scale them first
    us = b.select(tiny, b.fmul(u, _c(2.0**54)), u)
    bits = b.bitcast(us, I64)
    e = b.sub(b.and_(b.lshr(bits, ir.Constant(I64, 52)), ir.Constant(I64, 0x7FF)), ir.Constant(I64, 1023))
    e = b.select(tiny, b.sub(e, ir.Constant(I64, 54)), e)
    m = b.bitcast(b.or_(b.and_(bits, ir.Constant(I64, 0x000FFFFFFFFFFFFF)), ir.Constant(I64, 0x3FF0000000000000)), F64)
    big = b.fcmp_ordered(">", m, _c(math.sqrt(2.0)))
    m = b.select(big, b.fmul(m, _c(0.5)), m)
    e = b.select(big, b.add(e, ir.Constant(I64, 1)), e)
    f = b.fsub(m, _c(1.0))  # exact (Sterbenz)
    if c is not None:  # 2^-e for e <= 1000; beyond, c 2^-e is far below f's last bit anyway
        ne = b.sub(ir.Constant(I64, 0), e)
        ne = b.select(b.icmp_signed("<", ne, ir.Constant(I64, -1000)), ir.Constant(I64, -1000), ne)
        f = _fma(b, c, _pow2(b, ne), f)
    s = b.fdiv(f, b.fadd(f, _c(2.0)))
    z = b.fmul(s, s)
    r = b.fmul(z, _horner(b, LOG_COEFFS, z))
    hfsq = b.fmul(_c(0.5), b.fmul(f, f))
    ef = b.sitofp(e, F64)
    # e ln2_hi - ((hfsq - (s (hfsq + R) + e ln2_lo)) - f): the small terms summed first
    small = b.fsub(b.fsub(hfsq, _fma(b, s, b.fadd(hfsq, r), b.fmul(ef, _c(LN2_LO)))), f)
    return b.fsub(b.fmul(ef, _c(LN2_HI)), small)


def log(b: ir.IRBuilder, x):
    y = _log_positive(b, x)
    y = b.select(b.fcmp_ordered("==", x, _c(0.0)), _c(-math.inf), y)
    y = b.select(b.fcmp_ordered("==", x, _c(math.inf)), _c(math.inf), y)
    return b.select(b.fcmp_unordered("ult", x, _c(0.0)), _c(math.nan), y)  # x < 0 or NaN


def log1p(b: ir.IRBuilder, x):
    """log(u + c) with u = 1 + x rounded and c its rounding error, exact: x - (u - 1) while
    u < 2, 1 - (u - x) beyond (each subtraction exact by Sterbenz's lemma). Near 0, u = 2^0 m
    and f = (u - 1) + c is x itself, so no cancellation. -1 gives -inf, below it NaN."""
    u = b.fadd(x, _c(1.0))
    c = b.select(b.fcmp_ordered("<", u, _c(2.0)), b.fsub(x, b.fsub(u, _c(1.0))), b.fsub(_c(1.0), b.fsub(u, x)))
    y = _log_positive(b, u, c)
    y = b.select(b.fcmp_ordered("==", u, _c(0.0)), _c(-math.inf), y)
    y = b.select(b.fcmp_ordered("==", u, _c(math.inf)), _c(math.inf), y)
    y = b.select(b.fcmp_unordered("ult", u, _c(0.0)), _c(math.nan), y)  # x < -1 or NaN
    # below 2^-54, x itself: the sign of -0, and a subnormal's last bit
    return b.select(b.fcmp_ordered("<", _intrinsic(b, "llvm.fabs", x), _c(2.0**-54)), x, y)


def _exp_parts(b: ir.IRBuilder, y):
    """2^k and e^r - 1 with e^y = 2^k e^r, for -45 <= y <= 0: y = k ln2 + r as in exp, and
    e^r - 1 = r + r^2 P(r) with exp's P. For |y| < ln2/2, k = 0 and r = y, so that
    e^y - 1 = 2^k (e^r - 1) + (2^k - 1) has no cancellation near 0 (2^k - 1 is exact)."""
    kf = _intrinsic(b, "llvm.rint", b.fmul(y, _c(LOG2E)))
    nk = b.fneg(kf)
    r = _fma(b, nk, _c(LN2_LO), _fma(b, nk, _c(LN2_HI), y))
    return _pow2(b, b.fptosi(kf, I64)), _fma(b, b.fmul(r, r), _horner(b, EXP_COEFFS, r), r)


def tanh(b: ir.IRBuilder, x):
    """(1 - q) / (1 + q) with q = e^(-2|x|) = 2^k (1 + p), p = e^r - 1, the sign put back.
    Below |x| = 0.55 (tanh 0.5) as -t / (t + 2), t = q - 1 = 2^k p + (2^k - 1) and
    t + 2 = 2^k p + (2^k + 1), each one fused rounding: no cancellation near 0. Above, as
    1 - 2q / (1 + q), where q keeps its relative accuracy as it gets small (t + 2 would cost
    2 ulps of the result). One division either way, selected before it, and no branch.
    |x| >= 20 gives 1 exactly, as tanh rounds to it from 19.1 on."""
    ax = _intrinsic(b, "llvm.fabs", x)
    ax = b.select(b.fcmp_ordered(">", ax, _c(20.0)), _c(20.0), ax)
    p2k, p = _exp_parts(b, b.fmul(ax, _c(-2.0)))
    large = b.fcmp_ordered(">", ax, _c(0.55))
    q = _fma(b, p2k, p, p2k)
    num = b.select(large, b.fmul(q, _c(2.0)), b.fneg(_fma(b, p2k, p, b.fsub(p2k, _c(1.0)))))
    den = b.select(large, b.fadd(q, _c(1.0)), _fma(b, p2k, p, b.fadd(p2k, _c(1.0))))
    r = b.fdiv(num, den)
    r = b.select(large, b.fsub(_c(1.0), r), r)
    r = _intrinsic_copysign(b, r, x)
    return b.select(b.fcmp_unordered("uno", x, x), x, r)


def _intrinsic_copysign(b, mag, sign):
    fn = b.module.declare_intrinsic("llvm.copysign", [F64], ir.FunctionType(F64, [F64, F64]))
    return b.call(fn, [mag, sign])


def sigmoid(b: ir.IRBuilder, x):
    """1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: never overflows."""
    e = exp(b, b.fneg(_intrinsic(b, "llvm.fabs", x)))
    one = _c(1.0)
    pos = b.fdiv(one, b.fadd(one, e))
    return b.select(b.fcmp_ordered(">=", x, _c(0.0)), pos, b.fdiv(e, b.fadd(one, e)))


# sin and cos: fdlibm's kernels (__kernel_sin, __kernel_cos) on |r| <= pi/4. Arguments in
# that range are used as they are; up to TRIG_INLINE_MAX they are reduced as x = k pi/2 + r
# (pi/2 in three parts, the first two of 33 bits so that k * part is exact and x - k * part1
# is exact, the third by a fused multiply-add: r to about an ulp even next to a multiple of
# pi/2), and the quadrant k mod 4 picks the kernel and the sign; beyond, and NaN and inf, go
# to libm. The branches are predictable in a loop over nearby values (an ODE's state), where
# this is what matters: a scalar sin or sincos without a call, its latency about half libm's.
TRIG_INLINE_MAX = 16.0
PIO4 = 0.7853981633974483
PIO2_1 = 1.57079632673412561417e00
PIO2_2 = 6.07710050630396597660e-11
PIO2_2T = 2.02226624879595063154e-21
TWO_OVER_PI = 6.36619772367581382433e-01
SIN_COEFFS = [
    -1.66666666666666324348e-01,
    8.33333333332248946124e-03,
    -1.98412698298579493134e-04,
    2.75573137070700676789e-06,
    -2.50507602534068634195e-08,
    1.58969099521155010221e-10,
]
COS_COEFFS = [
    4.16666666666666019037e-02,
    -1.38888888888741095749e-03,
    2.48015872894767294178e-05,
    -2.75573143513906633035e-07,
    2.08757232129817482790e-09,
    -1.13596475577881948265e-11,
]


def _estrin(b: ir.IRBuilder, coeffs, x):
    """sum coeffs[n] x^n by Estrin's scheme: a shorter chain of dependent operations than
    Horner's, for latency-bound scalar code."""
    terms = [_c(c) for c in coeffs]
    power = x
    while len(terms) > 1:
        pairs = [_fma(b, terms[k + 1], power, terms[k]) for k in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
        power = b.fmul(power, power)
    return terms[0]


def _kernels(b: ir.IRBuilder, r, which: int):
    """sin r (which 0) or cos r (1) for |r| <= pi/4 (a little beyond, after reduction)."""
    z = b.fmul(r, r)
    if which == 0:
        return _fma(b, b.fmul(z, r), _estrin(b, SIN_COEFFS, z), r)
    hz = b.fmul(z, _c(0.5))
    w = b.fsub(_c(1.0), hz)
    # 1 - z/2 + z^2 C(z), the rounding error of 1 - z/2 put back (as fdlibm does)
    return b.fadd(w, b.fadd(b.fsub(b.fsub(_c(1.0), w), hz), b.fmul(b.fmul(z, z), _estrin(b, COS_COEFFS, z))))


def _reduced(b: ir.IRBuilder, x, which: int):
    kf = _intrinsic(b, "llvm.rint", b.fmul(x, _c(TWO_OVER_PI)))
    r = b.fsub(b.fsub(x, b.fmul(kf, _c(PIO2_1))), b.fmul(kf, _c(PIO2_2)))
    r = _fma(b, b.fneg(kf), _c(PIO2_2T), r)
    q = b.and_(b.fptosi(kf, I64), ir.Constant(I64, 3))
    # sin x = sin r, cos r, -sin r, -cos r in quadrants 0..3; cos x = cos r, -sin r, -cos r, sin r
    odd = b.icmp_unsigned("!=", b.and_(q, ir.Constant(I64, 1)), ir.Constant(I64, 0))
    s, c = _kernels(b, r, 0), _kernels(b, r, 1)
    v = b.select(odd, c, s) if which == 0 else b.select(odd, s, c)
    negate = b.icmp_unsigned("!=", b.and_(b.add(q, ir.Constant(I64, which)), ir.Constant(I64, 2)), ir.Constant(I64, 0))
    return b.select(negate, b.fneg(v), v)


def _trig(which: int):
    def kernel(b: ir.IRBuilder, x):
        ax = _intrinsic(b, "llvm.fabs", x)
        results = []
        with b.if_else(b.fcmp_ordered("<=", ax, _c(PIO4))) as (small, other):
            with small:
                v = _kernels(b, x, which)
                if which == 0:  # sin x = x below 2^-27, to the last bit and the sign of -0
                    v = b.select(b.fcmp_ordered("<", ax, _c(2.0**-27)), x, v)
                results.append((v, b.block))
            with other:
                with b.if_else(b.fcmp_ordered("<", ax, _c(TRIG_INLINE_MAX))) as (medium, large):
                    with medium:
                        results.append((_reduced(b, x, which), b.block))
                    with large:
                        results.append((_intrinsic(b, ("llvm.sin", "llvm.cos")[which], x), b.block))
                phi = b.phi(F64)
                for v, block in results[1:]:
                    phi.add_incoming(v, block)
                results[1:] = [(phi, b.block)]
        out = b.phi(F64)
        for v, block in results:
            out.add_incoming(v, block)
        return out

    return kernel


sin = _trig(0)
cos = _trig(1)


# tan: reduced as sin and cos are (exact enough up to TAN_INLINE_MAX: k pi/2's three parts
# leave an error far below the smallest r of a double there), then sin r / cos r, or
# -cos r / sin r in odd quadrants, one division selected before it. Without branches below
# TAN_INLINE_MAX; beyond, and inf and NaN, libm, behind the one branch, which data in range
# always predicts.
TAN_INLINE_MAX = 4096.0


def tan(b: ir.IRBuilder, x, libm_tan):
    """libm_tan(x) emits the call to libm's tan."""
    ax = _intrinsic(b, "llvm.fabs", x)
    results = []
    with b.if_else(b.fcmp_ordered("<", ax, _c(TAN_INLINE_MAX))) as (inline, libm):
        with inline:
            kf = _intrinsic(b, "llvm.rint", b.fmul(x, _c(TWO_OVER_PI)))
            r = b.fsub(b.fsub(x, b.fmul(kf, _c(PIO2_1))), b.fmul(kf, _c(PIO2_2)))
            r = _fma(b, b.fneg(kf), _c(PIO2_2T), r)
            odd = b.icmp_unsigned("!=", b.and_(b.fptosi(kf, I64), ir.Constant(I64, 1)), ir.Constant(I64, 0))
            s, c = _kernels(b, r, 0), _kernels(b, r, 1)
            v = b.fdiv(b.select(odd, b.fneg(c), s), b.select(odd, s, c))
            v = b.select(b.fcmp_ordered("<", ax, _c(2.0**-27)), x, v)  # x to the last bit, and -0
            results.append((v, b.block))
        with libm:
            results.append((libm_tan(x), b.block))
    out = b.phi(F64)
    for v, block in results:
        out.add_incoming(v, block)
    return out

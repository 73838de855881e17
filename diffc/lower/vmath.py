"""Math kernels for f64 and f32 emitted as plain LLVM IR (no libm calls), accurate to a few ulp
over the whole range (tests/lower/test_vmath.py measures them against NumPy and long double). Each
is written once for both formats (see Format): f32 is computed in f32, with its own
polynomials, so that a vector holds twice the elements of f64's (computing f32 in f64 and
rounding made f32 arrays slower than f64 ones).

exp:   x = k ln2 + r, |r| <= ln2/2 (Cody-Waite with a two-part ln2, fused multiply-adds), k
       rounded in the low bits of one fused multiply-add; e^r = 1 + r + r^2 P(r), P of degree 9
       (f32: 5); 2^k by llvm.ldexp where AVX-512 makes it one instruction (vscalefpd), else
       built in the exponent bits in two halves so that results down to the subnormals are
       right. 1.2 ulps.
log:   x = 2^e m, m in [sqrt(2)/2, sqrt(2)) from integer operations on x's bits (no select);
       log m = 2 atanh(s), s = (m - 1)/(m + 1), |s| < 0.172, as fdlibm: a minimax polynomial of
       degree 7 (f32: 4) in s^2, the small terms summed first. 1 ulp.
log1p: as log, with e that of u = 1 + x rounded and f = (1 + x) 2^-e - 1 in one fused rounding
       (the rounding error of u never shows), the sign of x put back by copysign. 1.4 ulps.
tanh:  (1 - q) / (1 + q), q = e^(-2|x|) from exp's polynomial (no second exp), numerator and
       denominator each one fused rounding (see tanh), the sign put back. 2 ulps. f32: e^r in
       fdlibm's rational form, whose division is tanh's own (_tanh_rational): 15% faster.
erf:   x P(x^2) below |x| = 1; beyond, 1 - e^(-x^2) R(|x| - c), R a polynomial for each of
       [1, 2.5) and [2.5, 6) (f32: one, [1, 4)), its coefficients selected. 2 ulps.
pow:   e^(y log|x|), log|x| and y log|x| double-doubles (see pow), C99's edges by selects; f32
       computed in f64 and rounded once. 0.82 ulp. Constant exponents: exact forms
       (pow_constant), within 2 ulps.
A loop of these is bound by the number of vector instructions more than by their latency
(AVX-512 on Zen 4: a division overlaps the rest; a comparison and select cost more than
their count), so each instruction counts: the exponentials round k in the bits of one fused
multiply-add and read it from there (no conversion, so NaN flows through without a select),
tanh's and erf's without exp's range clamps (their arguments are bounded: _exp_parts); log1p's
edges are one select on its bits.
These have no branches, so that LLVM's loop vectoriser turns a loop of them into SIMD code.
sin, cos of numbers: fdlibm's kernels, with branches on the size of the argument (see below), for
       latency-bound scalar code (an ODE step). f64 only.
sin, cos of arrays (sin_array, cos_array): x = k pi/2 + r, r a double-double exact to 2^-100
       (one fused multiply-add with pi/2, a two-sum with its second part), fdlibm's kernels
       with the tail, both computed and one selected by k mod 4: no branch, 1 ulp (0.03 on
       average), 1.1 ns an element against libm's 9.3. From |x| = 2^30 on libm's, behind the one
       branch, called through a masked vector variant on just the lanes that need it, so that
       every element is computed by the same operations whatever its lane or thread. f32 is
       computed in f64 and rounded once.
tan:   sin r / cos r with their reduction; libm's beyond |x| = 4096, behind a branch. 3 ulps.
       f64 only."""

from __future__ import annotations

import functools
import math
import struct
from dataclasses import dataclass

import llvmlite.binding as llvm
from llvmlite import ir

F64 = ir.DoubleType()
F32 = ir.FloatType()
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

# erf x = x P(x^2) for |x| < 1: P interpolating erf(x)/x at the Chebyshev nodes of x^2 in
# [0, 1] (relative error 8e-18)
ERF_SMALL = [
    1.1283791670955126,
    -0.37612638903183543,
    0.11283791670945006,
    -0.02686617064323777,
    0.0052239776071164225,
    -0.0008548325975389692,
    0.00012055294904839707,
    -1.492473690741966e-05,
    1.6447424703317362e-06,
    -1.6208483801871705e-07,
    1.3720064546777686e-08,
    -7.795898827002142e-10,
]
# erfc x = e^(-x^2) R(x - c): R interpolating erfc(x) e^(x^2) on [1, 2.5) about c = 1.75
# (relative error 6e-16: erfc/erf is at most 0.19 there) and on [2.5, 6) about c = 4.25 (2.5e-13,
# erfc below 4e-4 there); from 5.92 on, erf rounds to 1
ERFC_NEAR = [
    0.2849722347374364,
    -0.1309763455144821,
    0.0557636300870865,
    -0.02225999524165483,
    0.008404319207394291,
    -0.003020974644803341,
    0.0010392045208187824,
    -0.00034353342725064023,
    0.00010950530658864637,
    -3.375492008540358e-05,
    1.0086576456492661e-05,
    -2.9293898567097817e-06,
    8.274886764680256e-07,
    -2.2501983701420874e-07,
    6.054678916872184e-08,
    -1.879448760275295e-08,
    4.801487044012266e-09,
]
ERFC_FAR = [
    0.12934527478598792,
    -0.02894433141431893,
    0.006331866273822552,
    -0.0013559331717413223,
    0.0002845751576255405,
    -5.8595479107757066e-05,
    1.1848090069621631e-05,
    -2.354643625405094e-06,
    4.602675186093382e-07,
    -8.850813972376636e-08,
    1.6773006171480238e-08,
    -3.161762228793262e-09,
    5.817878250196085e-10,
    -9.53162541885136e-11,
    1.718049282257188e-11,
    -4.9783105180910425e-12,
    8.623297620611078e-13,
]


@dataclass(frozen=True)
class Format:
    """What a kernel needs to know of its float format: its LLVM types, its bit layout, where
    its functions round to their limits, and its polynomials (f32's shorter: its 24 bits need
    less than f64's 53)."""

    ty: ir.Type
    ity: ir.IntType  # the integer of the same width
    mant: int  # fraction bits
    bias: int
    ln2_hi: float  # k * ln2_hi exact for the k of exp and log
    ln2_lo: float
    exp_clamp: tuple  # exp's argument clamped to (lo, hi): beyond, 0 and inf all the same
    exp_coeffs: list
    log_coeffs: list
    log1p_tiny: float  # below, log1p x is x
    pow2_min: int  # the smallest exponent of a normal number
    tanh_sat: float  # from here on, tanh rounds to 1
    erf_small: list
    erfc: tuple  # ((from, centre, coefficients), ...): R on [from, next from)
    erf_sat: float  # erf rounds to 1 from here on
    tanh_rational: list | None = None  # P of tanh's rational form (see _tanh_rational), or None

    def c(self, v: float) -> ir.Constant:
        return ir.Constant(self.ty, v)

    def i(self, v: int) -> ir.Constant:
        return ir.Constant(self.ity, v)


FORMATS = {
    "double": Format(
        F64,
        I64,
        52,
        1023,
        LN2_HI,
        LN2_LO,
        (-746.0, 709.8),
        EXP_COEFFS,
        LOG_COEFFS,
        2.0**-54,
        -1000,
        20.0,
        ERF_SMALL,
        ((1.0, 1.75, ERFC_NEAR), (2.5, 4.25, ERFC_FAR)),
        6.0,
    ),
    "float": Format(
        F32,
        I32,
        23,
        127,
        0.693145751953125,  # 15 bits: k * it is exact for |k| < 2^9
        1.4286068203094173e-06,
        (-104.0, 89.0),  # e^-104 rounds to 0 in f32, e^89 overflows
        # as EXP_COEFFS, of degree 5: 3.5e-10 of e^r
        [
            0.5,
            0.1666666716337204,
            0.04166646674275398,
            0.00833331048488617,
            0.0013933641603216529,
            0.00019890980911441147,
        ],
        # FreeBSD's logf: minimax for |s| < 0.1716, error below 2^-34.24
        [0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841],
        2.0**-26,
        -126,
        10.0,
        # as ERF_SMALL, of degree 5 (relative error 5.5e-8 with its coefficients rounded to f32,
        # as degree 6's 6.6e-8), and R on [1, 4) about 2.5 (3.4e-8)
        [1.1283791065216064, -0.37612342834472656, 0.11280316859483719, -0.026715055108070374]
        + [0.004921761807054281, -0.0005648059886880219],
        (
            (
                1.0,
                2.5,
                [0.21080635488033295, -0.0743473470211029, 0.024938199669122696, -0.008001617155969143]
                + [0.002465999685227871, -0.0007333448738791049, 0.0002129504719050601, -5.932730346103199e-05]
                + [1.4364682101586368e-05, -3.83463202524581e-06, 1.6698367062417674e-06, -4.123142787193501e-07],
            ),
        ),
        4.0,
        # FreeBSD's expf: e^r = 1 + 2r / (2 - c), c = r - r^2 P(r^2), error below 2^-27.7
        [1.6666625440e-1, -2.7667332906e-3],
    ),
}


def _fmt(x) -> Format:
    return FORMATS[str(x.type)]


def _c(v: float) -> ir.Constant:
    """An f64 constant (the f64-only kernels)."""
    return ir.Constant(F64, v)


def _fma(b: ir.IRBuilder, x, y, z):
    """x * y + z in one rounding (a fused multiply-add where the CPU has one)."""
    fn = b.module.declare_intrinsic("llvm.fma", [x.type], ir.FunctionType(x.type, [x.type] * 3))
    return b.call(fn, [x, y, z])


def _horner(b: ir.IRBuilder, coeffs, x):
    acc = ir.Constant(x.type, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = _fma(b, acc, x, ir.Constant(x.type, c))
    return acc


def _intrinsic(b, name, x):
    fn = b.module.declare_intrinsic(name, [x.type])
    return b.call(fn, [x])


def _pow2(b, k, f: Format = FORMATS["double"]):
    """2.0 ** k for an integer k (of f's width) in f's range of normal exponents, from its bits."""
    return b.bitcast(b.shl(b.add(k, f.i(f.bias)), f.i(f.mant)), f.ty)


def _reduce_exp(b: ir.IRBuilder, f: Format, x):
    """k (an integer of f's width), k as a float and r with x = k ln2 + r, |r| <= ln2/2. k is
    rounded in the low bits of t = x log2(e) + 1.5 2^mant (one fused rounding to an integer)
    and read from them: no conversion, so that a NaN x gives a NaN result, not poison."""
    magic = 1.5 * 2.0**f.mant
    t = _fma(b, x, f.c(LOG2E), f.c(magic))
    kf = b.fsub(t, f.c(magic))
    nk = b.fneg(kf)
    k = b.sub(b.bitcast(t, f.ity), f.i(_bits(f, magic)))
    return k, kf, _fma(b, nk, f.c(f.ln2_lo), _fma(b, nk, f.c(f.ln2_hi), x))


def exp(b: ir.IRBuilder, x):
    f = _fmt(x)
    lo, hi = f.exp_clamp
    xc = b.select(b.fcmp_ordered(">", x, f.c(hi)), f.c(hi), x)
    xc = b.select(b.fcmp_ordered("<", xc, f.c(lo)), f.c(lo), xc)  # (NaN stays NaN)
    k, kf, r = _reduce_exp(b, f, xc)
    if f.ty is F64:
        p = _fma(b, b.fmul(r, r), _horner(b, f.exp_coeffs, r), b.fadd(r, _c(1.0)))
    else:  # 1 + (r + r^2 P): r + 1 rounded first would cost f32 half an ulp
        p = b.fadd(_fma(b, b.fmul(r, r), _horner(b, f.exp_coeffs, r), r), f.c(1.0))
    if _scalef():  # p 2^k in one instruction, rounded once, overflowing to inf, underflowing to 0
        fn = b.module.declare_intrinsic("llvm.ldexp", [f.ty, I32], ir.FunctionType(f.ty, [f.ty, I32]))
        return b.call(fn, [p, k if f.ty is F32 else b.trunc(k, I32)])
    k1 = b.ashr(k, f.i(1))  # 2^k = 2^k1 * 2^(k - k1), each factor a normal number
    y = b.fmul(b.fmul(p, _pow2(b, k1, f)), _pow2(b, b.sub(k, k1), f))
    if f.ty is F64:  # (f32's clamp keeps 2^k1 and 2^(k - k1) in range: inf and 0 come out)
        y = b.select(b.fcmp_ordered(">", x, _c(709.782712893384)), _c(math.inf), y)
        y = b.select(b.fcmp_ordered("<", x, _c(-745.1332191019412)), _c(0.0), y)
    return y


@functools.cache
def _scalef() -> bool:
    """Whether this CPU has AVX-512's vscalefpd, to which LLVM lowers llvm.ldexp on vectors
    (elsewhere ldexp is a libm call per element, slower than building 2^k from its bits)."""
    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def _split(b: ir.IRBuilder, u):
    """e and ix with u = 2^e m, m in [sqrt(2)/2, sqrt(2)), for a positive normal u: ix is u's
    bits less those of sqrt(2)/2, e its bits above the fraction, and m's bits are those of
    sqrt(2)/2 plus ix's fraction. Integer operations, no select."""
    f = _fmt(u)
    ix = b.sub(b.bitcast(u, f.ity), f.i(_bits(f, math.sqrt(0.5))))
    return ix, b.ashr(ix, f.i(f.mant))


def _log_reduced(b: ir.IRBuilder, e, fr):
    """e ln2 + log(1 + f) for f in [sqrt(2)/2 - 1, sqrt(2) - 1] as fdlibm's log: log(1 + f) =
    2 atanh(s), s = f / (2 + f) (one division), |s| < 0.172, by a minimax polynomial of degree
    7 (f32: 4) in s^2, the small terms summed first."""
    f = _fmt(fr)
    s = b.fdiv(fr, b.fadd(fr, f.c(2.0)))
    z = b.fmul(s, s)
    # log(1 + f) = f - s (f - R), R = z P(z), as fdlibm's f - (f^2/2 - s (f^2/2 + R))
    # (f^2/2 (1 - s) = f s); e ln2_hi + ((e ln2_lo - s (f - R)) + f), the small terms summed
    # first. e ln2_hi is exact, so that the last sum fused with it rounds the same
    ef = b.sitofp(e, f.ty)
    w = _fma(b, b.fneg(z), _horner(b, f.log_coeffs, z), fr)
    small = b.fsub(_fma(b, s, w, b.fneg(b.fmul(ef, f.c(f.ln2_lo)))), fr)
    return _fma(b, ef, f.c(f.ln2_hi), b.fneg(small))


def _bits(f: Format, v: float) -> int:
    """The bits of v rounded to f."""
    return int.from_bytes(struct.pack("<d" if f.ty is F64 else "<f", v), "little")


def log(b: ir.IRBuilder, x):
    """log(2^e m) = e ln2 + log m (see _split, _log_reduced), subnormals scaled first."""
    f = _fmt(x)
    smallest = 2.0**-1022 if f.ty is F64 else 2.0**-126
    scale = f.mant + 2
    tiny = b.fcmp_ordered("<", x, f.c(smallest))
    ix, e = _split(b, b.select(tiny, b.fmul(x, f.c(2.0**scale)), x))
    m = b.bitcast(b.add(b.and_(ix, f.i((1 << f.mant) - 1)), f.i(_bits(f, math.sqrt(0.5)))), f.ty)
    y = _log_reduced(b, b.select(tiny, b.sub(e, f.i(scale)), e), b.fsub(m, f.c(1.0)))  # m - 1 exact
    y = b.select(b.fcmp_ordered("==", x, f.c(0.0)), f.c(-math.inf), y)
    y = b.select(b.fcmp_ordered("==", x, f.c(math.inf)), f.c(math.inf), y)
    return b.select(b.fcmp_unordered("ult", x, f.c(0.0)), f.c(math.nan), y)  # x < 0 or NaN


def log1p(b: ir.IRBuilder, x):
    """e ln2 + log(1 + f) with 2^e the scale of u = 1 + x rounded (u is 0 or at least 2^-53:
    no subnormal) and f = (1 + x) 2^-e - 1 = x 2^-e + (2^-e - 1) in one fused rounding (2^-e - 1
    is exact while it matters), so that the rounding error of 1 + x does not show. Near 0,
    f is x itself: tiny x comes out as x to its last bit; log1p x has the sign of x, which
    gives -0 its sign. -1 gives -inf, below it NaN."""
    f = _fmt(x)
    u = b.fadd(x, f.c(1.0))
    _, e = _split(b, u)
    # 2^-e from its bits, made 2^64 larger so that the largest u's 2^-(bias + 1) is normal there
    p2 = b.fmul(b.bitcast(b.shl(b.sub(f.i(f.bias + 64), e), f.i(f.mant)), f.ty), f.c(2.0**-64))
    y = _log_reduced(b, e, _fma(b, x, p2, b.fsub(p2, f.c(1.0))))
    # the edges in one select, on u's bits: 0 < u < inf where bits - 1 is below inf's bits - 1
    # (unsigned); else inf's bits or'ed with u's (inf for u = 0, inf; NaN otherwise) and with
    # all ones for u < 0 (NaN); copysign then gives x = -1 its -inf
    bits = b.bitcast(u, f.ity)
    inf = f.i(_bits(f, math.inf))
    normal = b.icmp_unsigned("<", b.sub(bits, f.i(1)), b.sub(inf, f.i(1)))
    edge = b.or_(b.or_(inf, bits), b.ashr(bits, f.i(f.ity.width - 1)))
    return _copysign(b, b.select(normal, y, b.bitcast(edge, f.ty)), x)


def _exp_reduced(b: ir.IRBuilder, a, scale: float):
    """2^k and -r with e^(scale a) = 2^k e^r, scale -2 (tanh) or -1 (erf), for a >= 0 small
    enough that 2^k is a normal number: scale a = k ln2 + r as in exp. k comes rounded in the
    low bits of t = scale a log2(e) + 1.5 2^mant + bias (one fused rounding to an integer),
    2^k is those bits shifted into the exponent: no conversions, no clamps (exp's are for its
    whole range). The reduction works on -r = -scale a + k ln2 (-scale a exact)."""
    f = _fmt(a)
    magic = f.c(1.5 * 2.0**f.mant + f.bias)
    t = _fma(b, a, f.c(scale * LOG2E), magic)
    kf = b.fsub(t, magic)
    scaled = a if scale == -1.0 else b.fmul(a, f.c(-scale))
    nr = _fma(b, kf, f.c(f.ln2_lo), _fma(b, kf, f.c(f.ln2_hi), scaled))
    return b.bitcast(b.shl(b.bitcast(t, f.ity), f.i(f.mant)), f.ty), nr


def _exp_parts(b: ir.IRBuilder, a, scale: float):
    """2^k and e^r - 1 with e^(scale a) = 2^k e^r (see _exp_reduced): e^r - 1 = r + r^2 P(r)
    with exp's P, a polynomial of -r with its signs alternated. For a |scale| < ln2/2, k = 0
    and r = scale a, so that e^(scale a) - 1 = 2^k (e^r - 1) + (2^k - 1) has no cancellation
    near 0 (2^k - 1 is exact)."""
    f = _fmt(a)
    p2k, nr = _exp_reduced(b, a, scale)
    alternated = [-v if n % 2 else v for n, v in enumerate(f.exp_coeffs)]
    return p2k, _fma(b, b.fmul(nr, nr), _horner(b, alternated, nr), b.fneg(nr))


def tanh(b: ir.IRBuilder, x):
    """(1 - q) / (1 + q) with q = e^(-2|x|) = 2^k (1 + p), p = e^r - 1, the sign put back.
    1 - q = -2^k p + (1 - 2^k) and 1 + q = 2^k p + (1 + 2^k) are each one fused rounding of
    exact terms (1 +- 2^k is exact: k <= 0, and where k < -53, q no longer shows): no
    cancellation near 0, where q - 1 is p itself (k = 0). Three roundings of relative error,
    then the quotient's: 2 ulps. One division, and no branch.
    |x| >= tanh_sat gives 1 exactly, as tanh rounds to it (f64 from 19.1 on).
    f32 takes e^r in a rational form instead (_tanh_rational)."""
    f = _fmt(x)
    one = f.c(1.0)
    ax = _intrinsic(b, "llvm.fabs", x)
    ax = b.select(b.fcmp_ordered(">", ax, f.c(f.tanh_sat)), f.c(f.tanh_sat), ax)
    if f.tanh_rational:
        return _copysign(b, _tanh_rational(b, f, ax), x)
    p2k, p = _exp_parts(b, ax, -2.0)
    qm1 = _fma(b, p2k, p, b.fsub(p2k, one))  # -(1 - q), its sign left to copysign
    den = _fma(b, p2k, p, b.fadd(one, p2k))
    return _copysign(b, b.fdiv(qm1, den), x)  # NaN flows through: no conversion to an integer


def _tanh_rational(b: ir.IRBuilder, f: Format, a):
    """tanh a for 0 <= a <= tanh_sat (f32): q = e^(-2a) = 2^k e^r (_exp_reduced), but e^r
    in fdlibm's rational form, e^r = (D + 2r) / D, D = 2 - c, c = r - r^2 P(r^2) (P of degree
    1 for f32, against exp's degree 5), whose division becomes tanh's own: with A = 1 - 2^k,
    B = 1 + 2^k (exact), nr = -r and W = r^2 P, tanh a = (1 - q) / (1 + q) =
    ((2 + W) A + nr B) / ((2 + W) B + nr A). The numerator is one fused rounding of
    (2 + W) A + nr B, exactly 2 nr where k = 0 (A = 0, so no cancellation near 0). The
    denominator is the numerator plus 2^(k+1) (2 + W - nr): where k is far below 0, both are
    about 2 + W + nr and the numerator's rounding error, carried into the denominator, cancels
    in the quotient. Against f64 rounded to f32, over every 8th float32 below 20: at most 2
    ulps as the exponential form, 0.24 on average against its 0.28, and 15% faster (1.19
    times exp's time at 1e5 against 1.40). f64 keeps the exponential form: there, with
    numerator and denominator about 2 rather than 1, each rounding weighs twice as much, and
    this form is 2.3-2.8 ulps off the exact value where k = -1, against a bound of 2."""
    p2k, nr = _exp_reduced(b, a, -2.0)
    z = b.fmul(nr, nr)
    d = _fma(b, z, _horner(b, f.tanh_rational, z), f.c(2.0))  # 2 + W
    one = f.c(1.0)
    num = _fma(b, d, b.fsub(one, p2k), b.fmul(nr, b.fadd(one, p2k)))
    den = _fma(b, b.fadd(p2k, p2k), b.fsub(d, nr), num)
    return b.fdiv(num, den)


def _copysign(b, mag, sign):
    fn = b.module.declare_intrinsic("llvm.copysign", [mag.type], ir.FunctionType(mag.type, [mag.type] * 2))
    return b.call(fn, [mag, sign])


def sigmoid(b: ir.IRBuilder, x):
    """1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: never overflows."""
    f = _fmt(x)
    e = exp(b, b.fneg(_intrinsic(b, "llvm.fabs", x)))
    one = f.c(1.0)
    return b.fdiv(b.select(b.fcmp_ordered(">=", x, f.c(0.0)), one, e), b.fadd(one, e))  # one division


def erf(b: ir.IRBuilder, x):
    """x P(x^2) for |x| < 1, else 1 - e^(-x^2) R(|x| - c) with the sign put back (1 from
    erf_sat on). e^(-x^2) is taken of x^2 rounded: its relative error there, up to x^2 ulps
    of erfc, is a small part of an ulp of erf, erfc being small beside erf where x^2 is large.
    Both forms are computed and one selected: no branch."""
    f = _fmt(x)
    ax = _intrinsic(b, "llvm.fabs", x)
    ax = b.select(b.fcmp_ordered(">", ax, f.c(f.erf_sat)), f.c(f.erf_sat), ax)
    x2 = b.fmul(ax, ax)
    small = b.fmul(ax, _horner(b, f.erf_small, x2))
    # R's coefficients for ax's interval, then R at ax - centre
    (_, centre0, coeffs0), *rest = f.erfc
    centre = f.c(centre0)
    coeffs = [f.c(v) for v in coeffs0]
    for start, c1, more in rest:
        past = b.fcmp_ordered(">=", ax, f.c(start))
        centre = b.select(past, f.c(c1), centre)
        coeffs = [b.select(past, f.c(v), k) for v, k in zip(more, coeffs)]
    y = b.fsub(ax, centre)
    acc = coeffs[-1]
    for k in reversed(coeffs[:-1]):
        acc = _fma(b, acc, y, k)
    p2k, p = _exp_parts(b, x2, -1.0)  # e^(-x^2) = 2^k (1 + p), erf_sat^2 keeping 2^k normal
    large = b.fsub(f.c(1.0), b.fmul(_fma(b, p2k, p, p2k), acc))
    r = b.select(b.fcmp_ordered("<", ax, f.c(1.0)), small, large)
    r = b.select(b.fcmp_ordered(">=", ax, f.c(f.erf_sat)), f.c(1.0), r)
    return _copysign(b, r, x)  # NaN flows through: no conversion to an integer


# pow: x ** y = e^(y log|x|), the sign and the edges of C99's pow (NumPy's power) put back by
# selects. f64 needs log|x| to about 2^-68 (|y log|x|| reaches 745, and the result's relative
# error is the absolute error of y log|x|): log|x| = Lh + Ll, a double-double, from fdlibm's
# reduction (x = 2^e m, m in [sqrt(2)/2, sqrt(2))) with s = (m - 1)/(m + 1) a double-double
# from one division (the remainder of a division is exact in one fused multiply-add), and
# log m = 2s + 2/3 s^3 + s^5 Q(s^2), its first two terms in double-doubles as SLEEF's logk
# does; t = y L = th + tl, again a double-double; e^t as exp, the tail tl added to the
# reduced argument, 1 + r kept as hi + lo so that the result is rounded once before 2^k.
# No table (their reads become gathers, slow here: see log in docs/performance.md), no branch.
# f32 is computed in f64 with single doubles (log and exp's own polynomials): the error,
# |t| 2^-52 with |t| < 104, is far below f32's ulp, and the result is rounded once.
POW_LOG_COEFFS = [  # Q(z) = (2 atanh(s) - 2s - 2/3 s^3) / s^5, z = s^2 < 0.0295: s^5 Q to 2^-68
    0.4,
    0.28571428571429364,
    0.22222222221655885,
    0.18181818335392802,
    0.1538459496251843,
    0.1333480469384731,
    0.11706236339491206,
    0.11723178623876518,
]
TWO_THIRDS_HI = 0.6666666666666666
TWO_THIRDS_LO = 3.700743415417188e-17  # 2/3 - TWO_THIRDS_HI
# e^r = 1 + r + r^2 P(r) for |r| <= ln2/2 as exp's, of degree 10: 2^-61 of e^r (exp's degree
# 9: 2^-55.8, a tenth of an ulp, which pow's one rounding need not add)
POW_EXP_COEFFS = [
    0.5,
    0.1666666666666667,
    0.04166666666666667,
    0.008333333333326129,
    0.0013888888888883744,
    0.00019841269874840768,
    2.4801587325562125e-05,
    2.7557255374658744e-06,
    2.755727362486648e-07,
    2.510522763655176e-08,
    2.0914694560351592e-09,
]
POW_OVER = 709.79  # e^t overflows from here on (ln of the largest double: 709.7827)
POW_UNDER = -745.2  # and rounds to 0 below (ln 2^-1075 = -745.1332)


def _log_dd(b: ir.IRBuilder, a, precise: bool):
    """log a as a double-double (Lh, Ll) for a positive finite f64 a, subnormals scaled first;
    with precise False a single double (Ll None): log's own polynomial, 2^-52 of log a."""
    f = FORMATS["double"]
    tiny = b.fcmp_ordered("<", a, _c(2.0**-1022))
    ix, e = _split(b, b.select(tiny, b.fmul(a, _c(2.0**54)), a))
    e = b.sub(e, b.select(tiny, f.i(54), f.i(0)))
    m = b.bitcast(b.add(b.and_(ix, f.i((1 << f.mant) - 1)), f.i(_bits(f, math.sqrt(0.5)))), F64)
    fr = b.fsub(m, _c(1.0))  # exact
    if not precise:
        return _log_reduced(b, e, fr), None
    # s = fr / (m + 1): m + 1 = dh + dl exactly (dh - 1 and m - (dh - 1) are exact), sh = fr / dh
    # from a reciprocal (within an ulp), and sl = (fr - sh (dh + dl)) / dh, fr - sh dh exact
    dh = b.fadd(m, _c(1.0))
    dl = b.fsub(m, b.fsub(dh, _c(1.0)))
    inv = b.fdiv(_c(1.0), dh)
    sh = b.fmul(fr, inv)
    nsh = b.fneg(sh)
    sl = b.fmul(_fma(b, nsh, dl, _fma(b, nsh, dh, fr)), inv)
    # z = s^2 and s^3 = s z as double-doubles (their low parts to first order), then 2/3 s^3
    zh = b.fmul(sh, sh)
    zl = _fma(b, b.fadd(sh, sh), sl, _fma(b, sh, sh, b.fneg(zh)))
    ch = b.fmul(sh, zh)
    cl = _fma(b, sh, zl, _fma(b, sl, zh, _fma(b, sh, zh, b.fneg(ch))))
    th = b.fmul(ch, _c(TWO_THIRDS_HI))
    tl = _fma(b, ch, _c(TWO_THIRDS_LO), _fma(b, cl, _c(TWO_THIRDS_HI), _fma(b, ch, _c(TWO_THIRDS_HI), b.fneg(th))))
    s5 = _fma(b, ch, zh, _fma(b, ch, zl, b.fmul(cl, zh)))  # (s^5 of sh alone: 5 sl/sh off)
    t5 = b.fmul(s5, _horner(b, POW_LOG_COEFFS, zh))
    # e ln2_hi (exact) + 2 sh + th, each sum's error kept (the larger term first: |e ln2| >= 0.69
    # > |2s| unless e = 0, and |2s| > |2/3 s^3|), then the small terms, s^5 Q last
    ef = b.sitofp(e, F64)
    big = b.fmul(ef, _c(LN2_HI))
    s2 = b.fadd(sh, sh)
    ah = b.fadd(big, s2)
    al = b.fadd(b.fsub(big, ah), s2)
    bh = b.fadd(ah, th)
    bl = b.fadd(b.fsub(ah, bh), th)
    tail = b.fadd(b.fadd(b.fadd(al, bl), b.fadd(b.fadd(sl, sl), tl)), _fma(b, ef, _c(LN2_LO), t5))
    lh = b.fadd(bh, tail)
    return lh, b.fadd(b.fsub(bh, lh), tail)


def _exp_dd(b: ir.IRBuilder, th, tl):
    """e^(th + tl) for th in [POW_UNDER, POW_OVER] (tl None: 0), rounded once: th = k ln2 + r1
    with r1 exact (k ln2_hi is, and so th - k ln2_hi), c = tl - k ln2_lo, and
    e^r = hi + (lo + c + r^2 P(r)), r = r1 + c, with hi + lo = 1 + r1 exactly; then 2^k."""
    f = FORMATS["double"]
    magic = 1.5 * 2.0**f.mant
    t = _fma(b, th, _c(LOG2E), _c(magic))
    kf = b.fsub(t, _c(magic))
    k = b.sub(b.bitcast(t, I64), f.i(_bits(f, magic)))
    nk = b.fneg(kf)
    r1 = _fma(b, nk, _c(LN2_HI), th)
    c = _fma(b, nk, _c(LN2_LO), _c(0.0) if tl is None else tl)
    r = b.fadd(r1, c)
    hi = b.fadd(r1, _c(1.0))
    lo = b.fadd(b.fsub(_c(1.0), hi), r1)
    p = b.fadd(hi, _fma(b, b.fmul(r, r), _horner(b, POW_EXP_COEFFS, r), b.fadd(lo, c)))
    if _scalef():
        fn = b.module.declare_intrinsic("llvm.ldexp", [F64, I32], ir.FunctionType(F64, [F64, I32]))
        return b.call(fn, [p, b.trunc(k, I32)])
    k1 = b.ashr(k, f.i(1))  # as exp: two normal factors, one rounding
    return b.fmul(b.fmul(p, _pow2(b, k1, f)), _pow2(b, b.sub(k, k1), f))


def pow(b: ir.IRBuilder, x, y):
    """x ** y with C99's edges: 1 where y = +-0 (even for NaN x), where x = 1 (even for NaN y)
    and for x = -1 with y = +-inf; x < 0 takes |x| ** y with the sign of x for odd integral y
    and is NaN for finite x and non-integral y; log 0 = -inf and log inf = inf give zeros and
    infinities (signed by the same rule) through y log|x| = +-inf. f64 within 1 ulp, f32
    computed in f64 and rounded once."""
    if x.type is F32:
        return b.fptrunc(_pow64(b, b.fpext(x, F64), b.fpext(y, F64), False), F32)
    return _pow64(b, x, y, True)


def _pow64(b: ir.IRBuilder, x, y, precise: bool):
    f = FORMATS["double"]
    inf = _c(math.inf)
    ax = _intrinsic(b, "llvm.fabs", x)
    lh, ll = _log_dd(b, ax, precise)
    # 0 < |x| < inf where its bits - 1 are below inf's bits - 1 (unsigned); else log|x| is
    # (|x| - 1) inf: -inf for 0, inf for inf, NaN for NaN
    bits = b.bitcast(ax, I64)
    normal = b.icmp_unsigned("<", b.sub(bits, f.i(1)), f.i(_bits(f, math.inf) - 1))
    lh = b.select(normal, lh, b.fmul(b.fsub(ax, _c(1.0)), inf))
    # y clamped to +-2^64 (NaN kept: a minimum and a maximum): |x| = 1 then gives y log|x| = 0
    # for y = +-inf, where inf 0 would be NaN, and any other |x|, |log|x|| >= 2^-53, still
    # overflows or underflows (an even integer, as inf counts)
    yc = b.select(b.fcmp_ordered(">", y, _c(2.0**64)), _c(2.0**64), y)
    yc = b.select(b.fcmp_ordered("<", yc, _c(-(2.0**64))), _c(-(2.0**64)), yc)
    th = b.fmul(yc, lh)
    tl = None if ll is None else _fma(b, yc, ll, _fma(b, yc, lh, b.fneg(th)))
    r = _exp_dd(b, th, tl)
    r = b.select(b.fcmp_ordered(">", th, _c(POW_OVER)), inf, r)
    r = b.select(b.fcmp_ordered("<", th, _c(POW_UNDER)), _c(0.0), r)  # (NaN stays NaN)
    # x's sign where y is an odd integer (integral, half of it not: inf is even); NaN for a
    # finite x < 0 (its bits less those of -0 less 1 below those of -inf less -0's, unsigned)
    # and y not integral
    yint = b.fcmp_ordered("==", _intrinsic(b, "llvm.trunc", y), y)
    half = b.fmul(y, _c(0.5))
    odd = b.and_(yint, b.fcmp_unordered("!=", _intrinsic(b, "llvm.trunc", half), half))
    xbits = b.bitcast(x, I64)
    sign = b.and_(xbits, f.i(-(2**63)))
    r = b.select(odd, b.bitcast(b.xor(b.bitcast(r, I64), sign), F64), r)
    negative = b.icmp_unsigned("<", b.sub(xbits, f.i(2**63 + 1)), f.i(_bits(f, -math.inf) - 2**63 - 1))
    r = b.select(b.and_(negative, b.not_(yint)), _c(math.nan), r)
    return b.select(b.or_(b.fcmp_ordered("==", y, _c(0.0)), b.fcmp_ordered("==", x, _c(1.0))), _c(1.0), r)


def pow_constant(b: ir.IRBuilder, x, y: float):
    """x ** y for a y known at compile time, by a cheaper form where one keeps pow's edges
    and 2 ulps (each within 1.5-1.91: a rounded square squared, (1/x)^2, is the worst),
    else None (the kernel). x ** 2 would be LLVM's own fold of llvm.pow; 1/(x x) would lose
    bits where x x is subnormal, so -2 is (1/x)^2; sqrt(-0) = -0 and sqrt(-inf) = NaN, but
    pow gives +0 and +inf (and -inf ** -0.5 = +0)."""
    f = _fmt(x)
    one, inf = f.c(1.0), f.c(math.inf)
    if y == 0:
        return one
    if y == 1:
        return x
    if y == 2:
        return b.fmul(x, x)
    if y == 3:
        return b.fmul(b.fmul(x, x), x)
    if y == 4:
        sq = b.fmul(x, x)
        return b.fmul(sq, sq)
    if y == -1:
        return b.fdiv(one, x)
    if y == -2:
        inv = b.fdiv(one, x)
        return b.fmul(inv, inv)
    if y in (0.5, -0.5, 1.5):
        root = _intrinsic(b, "llvm.fabs", _intrinsic(b, "llvm.sqrt", x))
        minus_inf = b.fcmp_ordered("==", x, b.fneg(inf))
        if y == 0.5:
            return b.select(minus_inf, inf, root)
        if y == -0.5:
            return b.select(minus_inf, f.c(0.0), b.fdiv(one, root))
        return b.select(minus_inf, inf, b.fmul(_intrinsic(b, "llvm.fabs", x), root))
    return None


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


# sin and cos of arrays: one branch-free kernel for both (computed in f64; f32 is rounded once
# from it), so that a loop of them vectorises. x = k pi/2 + r, k rounded in the low bits of
# one fused multiply-add (as exp's), and r as a double-double rh + rl: x - k C1 is exact in one
# fused multiply-add (C1 = pi/2 rounded: both terms are multiples of x's or C1's ulp, their
# difference below 2), k C2 is split into its rounding and its error by a second one, the
# difference summed exactly (two-sum), and k C3 added to the tail (C1 + C2 + C3 = pi/2 to
# 2^-160). r is then within 2^-100 of its exact value up to |x| = TRIG_VECTOR_MAX, so that even
# next to a multiple of pi/2 (r down to about 2^-60) sin and cos are within an ulp. fdlibm's
# kernels with the tail then give sin r and cos r, both computed (sin x and cos x of the same x
# in one loop share them), k mod 4 selecting one and its sign. From TRIG_VECTOR_MAX on (and
# inf, made NaN): libm, behind a branch that LLVM's vectoriser turns into a call of a masked
# vector variant (_libm_pure), inlined into the loop: one test of the lanes per vector, libm
# called for just the lanes beyond. Every element is computed by the same operations whether
# its lane is vectorised or not (a vector math library's results would differ from the scalar
# remainder's libm calls). This branch costs 10-25% (the elementwise family's forward and
# value-and-grad without it: 431 and 822 us over 1e5 f64, with it 482 and 1040-1160); a
# branch-free Payne-Hanek reduction for every lane (SLEEF's rempi: about 80 operations and
# four gathers) would cost more than the kernel itself.
TRIG_VECTOR_MAX = 2.0**30
VARIANT_PREFIX = "diffc_libm_"  # the libm wrappers and their vector variants
PIO2_C1 = 1.5707963267948966
PIO2_C2 = 6.123233995736766e-17
PIO2_C3 = -1.4973849048591698e-33


def _two_sum(b: ir.IRBuilder, a, c):
    """s and e with s + e = a + c exactly, s = a + c rounded (Knuth: no condition on sizes)."""
    s = b.fadd(a, c)
    a1 = b.fsub(s, c)
    c1 = b.fsub(s, a1)
    return s, b.fadd(b.fsub(a, a1), b.fsub(c, c1))


def _reduce_pio2(b: ir.IRBuilder, x):
    """k's bits (their two lowest k mod 4) and rh + rl = x - k pi/2 (see above)."""
    magic = _c(1.5 * 2.0**52)
    t = _fma(b, x, _c(TWO_OVER_PI), magic)
    kf = b.fsub(t, magic)
    nk = b.fneg(kf)
    r1 = _fma(b, nk, _c(PIO2_C1), x)
    p = b.fmul(kf, _c(PIO2_C2))
    pe = _fma(b, kf, _c(PIO2_C2), b.fneg(p))  # k C2 = p + pe exactly
    rh, e = _two_sum(b, r1, b.fneg(p))
    rl = _fma(b, nk, _c(PIO2_C3), b.fsub(e, pe))
    return b.bitcast(t, I64), rh, rl


def _sin_dd(b: ir.IRBuilder, x, y):
    """sin(x + y) for |x| <= pi/4, y a tail below x's ulp: fdlibm's __kernel_sin."""
    z = b.fmul(x, x)
    v = b.fmul(z, x)
    r = _horner(b, SIN_COEFFS[1:], z)
    w = _fma(b, b.fneg(v), r, b.fmul(y, _c(0.5)))  # y/2 - v r
    w = _fma(b, b.fneg(v), _c(SIN_COEFFS[0]), _fma(b, z, w, b.fneg(y)))  # (z w - y) - v S1
    return b.fsub(x, w)


def _cos_dd(b: ir.IRBuilder, x, y):
    """cos(x + y) for |x| <= pi/4: fdlibm's __kernel_cos, 1 - z/2 + z^2 C(z) - x y, the
    rounding error of 1 - z/2 put back."""
    z = b.fmul(x, x)
    hz = b.fmul(z, _c(0.5))
    w = b.fsub(_c(1.0), hz)
    tail = _fma(b, b.fmul(z, z), _horner(b, COS_COEFFS, z), b.fneg(b.fmul(x, y)))
    return b.fadd(w, b.fadd(b.fsub(b.fsub(_c(1.0), w), hz), tail))


def _trig_inline(b: ir.IRBuilder, x, which: int):
    """sin x (which 0) or cos x (1) for |x| < TRIG_VECTOR_MAX, and NaN for inf and NaN (r is
    NaN): no branch, no select but the kernel's. sin x = sin r, cos r, -sin r, -cos r in
    quadrants 0..3; cos x = cos r, -sin r, -cos r, sin r: the sign is bit 1 of k + which."""
    bits, rh, rl = _reduce_pio2(b, x)
    s, c = _sin_dd(b, rh, rl), _cos_dd(b, rh, rl)
    odd = b.trunc(bits, ir.IntType(1))
    v = b.select(odd, c, s) if which == 0 else b.select(odd, s, c)
    sign = b.and_(b.shl(b.add(bits, ir.Constant(I64, which)), ir.Constant(I64, 62)), ir.Constant(I64, 1 << 63))
    return b.bitcast(b.xor(b.bitcast(v, I64), sign), F64)


def _libm_pure(b: ir.IRBuilder, name: str, x):
    """A call of libm's `name` (of f64) for the lanes of a vectorised loop that need it, and
    those alone: the call is to a wrapper declared readnone (libm sets no errno for finite and NaN
    arguments) and never inlined, which names vector variants of itself with a mask
    (_masked_variant); the vectoriser calls these on the lanes whose branch is taken, and the
    loop's scalar remainder calls the wrapper. (A call of an unknown function keeps a loop
    scalar; a call of libm's sin LLVM would turn into llvm.sin, which it runs for every lane.)"""
    module = b.module
    symbol = f"{VARIANT_PREFIX}{name}"
    wrapper = module.globals.get(symbol)
    if wrapper is None:
        fty = ir.FunctionType(F64, [F64])
        libm = module.globals.get(name) or ir.Function(module, fty, name)
        wrapper = ir.Function(module, fty, symbol)
        wrapper.linkage = "internal"
        wrapper.attributes.update(("noinline", "readnone", "nounwind"))
        wb = ir.IRBuilder(wrapper.append_basic_block())
        wb.ret(_libm_call(wb, libm, wrapper.args[0]))
        masked = [_masked_variant(module, libm, symbol, n) for n in (2, 4, 8, 16)]
        variants = ",".join(f"_ZGV_LLVM_M{len(fn.args[0].type)}v_{symbol}({fn.name})" for fn in masked)
        set.add(wrapper.attributes, f'"vector-function-abi-variant"="{variants}"')  # (llvmlite knows no such attribute)
    return b.call(wrapper, [x])


def _masked_variant(module: ir.Module, libm: ir.Function, symbol: str, lanes: int) -> ir.Function:
    """<lanes x double> f(<lanes x double> x, <lanes x i1> mask): libm on the lanes in mask,
    the other lanes x. Inlined into the loop: the test that no lane is in the mask (one
    comparison), then a call of the lanes' loop (_lanes), kept out of the loop's code."""
    vty = ir.VectorType(F64, lanes)
    fty = ir.FunctionType(vty, [vty, ir.VectorType(ir.IntType(1), lanes)])
    fn = ir.Function(module, fty, f"{symbol}_m{lanes}")
    # weak_odr: kept until the vectoriser looks for it (unreferenced till then), and defined in
    # each unit of a long module (lower/llvm.py's module_units), the same everywhere; inlined
    # into the loop after the vectoriser (lower/jit.py's optimise_module)
    fn.linkage = "weak_odr"
    fn.attributes.update(("readnone", "nounwind", "alwaysinline"))
    x, mask = fn.args
    b = ir.IRBuilder(fn.append_basic_block())
    bits = b.bitcast(mask, ir.IntType(lanes))
    with b.if_then(b.icmp_unsigned("==", bits, ir.Constant(ir.IntType(lanes), 0)), likely=True):
        b.ret(x)
    b.ret(b.call(_lanes(module, libm, fty, f"{symbol}_l{lanes}"), [x, mask]))
    return fn


def _lanes(module: ir.Module, libm: ir.Function, fty: ir.FunctionType, name: str) -> ir.Function:
    """libm on each lane of x in mask, a loop over the mask's set bits (never inlined: cold)."""
    fn = ir.Function(module, fty, name)
    fn.linkage = "weak_odr"
    fn.attributes.update(("readnone", "nounwind", "noinline", "cold"))
    x, mask = fn.args
    bty = ir.IntType(fty.return_type.count)
    b = ir.IRBuilder(fn.append_basic_block())
    entry, body, done = b.block, fn.append_basic_block(), fn.append_basic_block()
    first = b.bitcast(mask, bty)
    b.branch(body)
    b.position_at_end(body)
    v, bits = b.phi(fty.return_type), b.phi(bty)  # (the mask has a lane: see _masked_variant)
    cttz = b.module.declare_intrinsic("llvm.cttz", [bty], ir.FunctionType(bty, [bty, ir.IntType(1)]))
    lane = b.call(cttz, [bits, ir.Constant(ir.IntType(1), 1)])
    updated = b.insert_element(v, _libm_call(b, libm, b.extract_element(v, lane)), lane)
    rest = b.and_(bits, b.sub(bits, ir.Constant(bty, 1)))  # the lowest set bit cleared
    v.add_incoming(x, entry)
    v.add_incoming(updated, body)
    bits.add_incoming(first, entry)
    bits.add_incoming(rest, body)
    b.cbranch(b.icmp_unsigned("==", rest, ir.Constant(bty, 0)), done, body)
    b.position_at_end(done)
    b.ret(updated)
    return fn


def _libm_call(b: ir.IRBuilder, libm: ir.Function, v):
    """libm's value at v, an infinite v made NaN first: libm's sin(inf) would set errno."""
    inf = b.fcmp_ordered("==", _intrinsic(b, "llvm.fabs", v), _c(math.inf))
    return b.call(libm, [b.select(inf, _c(math.nan), v)])


def _trig_array(which: int):
    def kernel(b: ir.IRBuilder, x):
        """The inline value, replaced by libm's where |x| >= TRIG_VECTOR_MAX."""
        inline = _trig_inline(b, x, which)
        ax = _intrinsic(b, "llvm.fabs", x)
        huge = b.fcmp_ordered(">=", ax, _c(TRIG_VECTOR_MAX))  # (inf too: one comparison)
        before = b.block
        with b.if_then(huge, likely=False):
            called = _libm_pure(b, ("sin", "cos")[which], x)
            libm = b.block
        out = b.phi(F64)
        out.add_incoming(inline, before)
        out.add_incoming(called, libm)
        return out

    return kernel


sin_array = _trig_array(0)
cos_array = _trig_array(1)


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

"""Counter-based random numbers: Threefry-2x64 with 20 rounds (Salmon et al., 2011), as JAX
uses Threefry. Element c of a draw is a pure function of (key, c), so the same key gives the
same numbers on every run and machine, and draws need no state."""

from __future__ import annotations

import math

from llvmlite import ir

from ..lower.emit import Arr
from ..typesys import DType, TensorType
from .core import primitive

_ROT = (16, 42, 12, 31, 16, 32, 24, 21)
_PARITY = 0x1BD11BDAA9FC1A22


def threefry2x64(em, k0, k1, c0, c1):
    """The Threefry-2x64-20 block function on i64 values: returns (x0, x1)."""
    B = em.b
    i64 = ir.IntType(64)

    def rotl(x, r):
        return B.or_(B.shl(x, ir.Constant(i64, r)), B.lshr(x, ir.Constant(i64, 64 - r)))

    ks = [k0, k1, B.xor(B.xor(k0, k1), ir.Constant(i64, _PARITY))]
    x0, x1 = B.add(c0, ks[0]), B.add(c1, ks[1])
    for r in range(20):
        x0 = B.add(x0, x1)
        x1 = B.xor(rotl(x1, _ROT[r % 8]), x0)
        if r % 4 == 3:
            s = r // 4 + 1
            x0 = B.add(x0, ks[s % 3])
            x1 = B.add(B.add(x1, ks[(s + 1) % 3]), ir.Constant(i64, s))
    return x0, x1


def _unit(em, bits, ty):
    """The top 53 bits of `bits` as a float in [0, 1)."""
    top = em.b.lshr(bits, ir.Constant(ir.IntType(64), 11))
    return em.b.fmul(em.b.uitofp(top, ty), ir.Constant(ty, 2.0**-53))


def _each_element(em, eqn, ins, element):
    """A draw's result: element(k0, k1, c) at each row-major position c, with the key's two
    words loaded once; a draw of shape [] is a scalar in a register, as every scalar is."""
    (key,) = ins
    k0, k1 = em.load(key, [em.i64(0)]), em.load(key, [em.i64(1)])
    t = eqn.outs[0].type
    if t.rank == 0:
        return [element(k0, k1, em.i64(0))]
    out = em.alloc(t)
    flat = Arr(out.ptr, out.offset, (1,), t.with_shape((t.size,)))
    em.loop(t.size, lambda c: em.store(flat, [c], element(k0, k1, c)), "rng")
    return [out]


def _draw(fn):
    def lower(em, eqn, ins):
        t = eqn.outs[0].type
        return _each_element(em, eqn, ins, lambda k0, k1, c: fn(em, t, threefry2x64(em, k0, k1, c, em.i64(0))))

    return lower


def _bits(em, t, x):
    return x[0]


def _uniform(em, t, x):
    return _unit(em, x[0], ir.DoubleType())


def _normal(em, t, x):
    """Box-Muller: u1 in (0, 1] so that log(u1) is finite."""
    ty = ir.DoubleType()
    B = em.b
    u1 = B.fsub(ir.Constant(ty, 1.0), _unit(em, x[0], ty))
    u2 = _unit(em, x[1], ty)
    r = em.intrinsic("llvm.sqrt", ty, [B.fmul(ir.Constant(ty, -2.0), em.intrinsic("llvm.log", ty, [u1]))])
    return B.fmul(r, em.intrinsic("llvm.cos", ty, [B.fmul(ir.Constant(ty, 2 * math.pi), u2)]))


def _shape_rule(dtype):
    return lambda ts, shape: [TensorType(dtype, tuple(shape))]


random_bits_p = primitive("random_bits", shape=_shape_rule(DType.I64), lower=_draw(_bits), nondiff=True)
random_uniform_p = primitive("random_uniform", shape=_shape_rule(DType.F64), lower=_draw(_uniform), nondiff=True)
random_normal_p = primitive("random_normal", shape=_shape_rule(DType.F64), lower=_draw(_normal), nondiff=True)


def _int_lower(em, eqn, ins):
    """Integers in [lo, hi), unbiased: 64 random bits x are kept when x >= 2**64 mod (hi - lo),
    so that the kept ones are a whole number of copies of the range, and mapped to
    lo + x mod (hi - lo). A rejected x is drawn again with the next counter in the block's
    second word (a rejection has probability (hi - lo) / 2**64 at most: mostly never).

        retry: x = threefry(key, (c, tries))[0]; tries += 1; x < floor ? retry : done
    """
    B = em.b
    lo, hi = eqn.params["lo"], eqn.params["hi"]
    span = (hi - lo) % 2**64  # as an unsigned 64-bit number (hi - lo may not fit in an i64)
    floor = ir.Constant(ir.IntType(64), 2**64 % span)
    tries = em.alloca(ir.IntType(64))

    def element(k0, k1, c):
        B.store(em.i64(0), tries)
        retry, done = em.block("ri.retry"), em.block("ri.done")
        B.branch(retry)
        B.position_at_end(retry)
        n = B.load(tries)
        x = threefry2x64(em, k0, k1, c, n)[0]
        B.store(B.add(n, em.i64(1)), tries)
        B.cbranch(B.icmp_unsigned("<", x, floor), retry, done)
        B.position_at_end(done)
        return B.add(em.i64(lo), B.urem(x, ir.Constant(ir.IntType(64), span)))

    return _each_element(em, eqn, ins, element)


random_int_p = primitive(
    "random_int", shape=lambda ts, shape, lo, hi: [TensorType(DType.I64, tuple(shape))], lower=_int_lower, nondiff=True
)

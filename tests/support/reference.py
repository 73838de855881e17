"""NumPy reference semantics of DFL, used only by the tests (style.md, practice 8).

Each function says what a DFL built-in or primitive computes, written directly with NumPy and
independent of diffc's code, so that a test compares diffc's native code with an oracle.
"""

from __future__ import annotations

import math

import numpy as np

# --- elementwise ---------------------------------------------------------------------------------


def sigmoid(x):
    x = np.asarray(x)
    return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))).astype(x.dtype)


def erf(x):
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def relu(x):
    x = np.asarray(x)
    return np.maximum(x, np.zeros((), x.dtype))


def ipow(a, b):
    """`**` on i64: exact integer powers. NumPy refuses negative exponents; DFL gives 1 / a**-b
    truncated toward zero: 1 for a == 1, +-1 for a == -1, and 0 otherwise (0 for a == 0 too)."""
    a, b = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    negative = np.where(a == 1, 1, np.where(a == -1, np.where(b % 2 == 1, -1, 1), 0))
    return np.where(b >= 0, np.power(a, np.maximum(b, 0)), negative)


def to_i64(x):
    """`i64(x)`: floats truncate toward zero."""
    return np.trunc(np.asarray(x)).astype(np.int64)


# --- reductions and shapes -------------------------------------------------------------------------


def argmax_flat(x):
    """`argmax(x)` without an axis: the row-major flat index of the first largest element."""
    return int(np.argmax(np.asarray(x).reshape(-1)))


def argmin_flat(x):
    """`argmin(x)` without an axis: the row-major flat index of the first smallest element."""
    return int(np.argmin(np.asarray(x).reshape(-1)))


def logsumexp(x, axis=None, keepdims=False):
    """`logsumexp`: log(sum(exp(x))), -inf for all -inf (or no) elements, +inf for a +inf one,
    NaN for a NaN one; computed in f64 (x - max is exact) and rounded to x's dtype."""
    x = np.asarray(x)
    with np.errstate(all="ignore"):
        m = np.max(x.astype(np.float64), axis=axis, keepdims=True, initial=-np.inf)
        shift = np.where(np.isfinite(m), m, 0.0)
        out = np.log(np.sum(np.exp(x - shift), axis=axis, keepdims=True)) + shift
    if not keepdims:
        out = np.squeeze(out, axis=axis if axis is not None else tuple(range(x.ndim)))
    return np.asarray(out, dtype=x.dtype)


def windows(x, k):
    """`windows(x, k)`: shape [len(x) - k + 1, k, ...]."""
    x = np.asarray(x)
    return np.stack([x[i : i + k] for i in range(x.shape[0] - k + 1)])


def one_hot(ids, n):
    ids = np.asarray(ids)
    return (ids[..., None] == np.arange(n)).astype(np.float64)


# --- randomness: Threefry-2x64-20 (Salmon et al., 2011), as documented in diffc/prims/random.py ------

_M64 = (1 << 64) - 1
_ROT = (16, 42, 12, 31, 16, 32, 24, 21)
_PARITY = 0x1BD11BDAA9FC1A22


def threefry2x64(k0: int, k1: int, c0: int, c1: int) -> tuple[int, int]:
    """The Threefry-2x64 block function with 20 rounds on unsigned 64-bit Python ints."""
    ks = (k0 & _M64, k1 & _M64, (k0 ^ k1 ^ _PARITY) & _M64)
    x0, x1 = (c0 + ks[0]) & _M64, (c1 + ks[1]) & _M64
    for r in range(20):
        x0 = (x0 + x1) & _M64
        rot = _ROT[r % 8]
        x1 = (((x1 << rot) | (x1 >> (64 - rot))) & _M64) ^ x0
        if r % 4 == 3:
            s = r // 4 + 1
            x0 = (x0 + ks[s % 3]) & _M64
            x1 = (x1 + ks[(s + 1) % 3] + s) & _M64
    return x0, x1


def _signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


def key(seed: int) -> np.ndarray:
    """`key(seed)`: the i64 pair [0, seed]."""
    return np.array([0, seed], dtype=np.int64)


def _blocks(k, count):
    k0, k1 = (int(v) & _M64 for v in k)
    return [threefry2x64(k0, k1, c, 0) for c in range(count)]


def split(k, count: int = 2) -> tuple[np.ndarray, ...]:
    """`split(k, n)`: n new keys, from the first word of blocks 0 .. 2n-1."""
    bits = [_signed(x0) for x0, _ in _blocks(k, 2 * count)]
    return tuple(np.array(bits[2 * i : 2 * i + 2], dtype=np.int64) for i in range(count))


def _unit(u: int) -> float:
    return (u >> 11) * 2.0**-53


def uniform(k, shape) -> np.ndarray:
    """`uniform(k, shape)`: element c is the top 53 bits of block c's first word, in [0, 1)."""
    n = math.prod(shape)
    return np.array([_unit(x0) for x0, _ in _blocks(k, n)], dtype=np.float64).reshape(shape)


def normal(k, shape) -> np.ndarray:
    """`normal(k, shape)`: Box-Muller on the two words of block c."""
    n = math.prod(shape)
    out = [math.sqrt(-2.0 * math.log(1.0 - _unit(x0))) * math.cos(2 * math.pi * _unit(x1)) for x0, x1 in _blocks(k, n)]
    return np.array(out, dtype=np.float64).reshape(shape)


def strided_pad(g, index, shape):
    """The gradient of x[index] with cotangent g: zeros(shape) with g where x[index] reads."""
    out = np.zeros(shape)
    out[index] = g
    return out


def extreme_scatter(x, g, axes, kind="max"):
    """x's shape with g at the first largest (smallest) element of each group over `axes` and 0
    elsewhere (the first NaN, as argmax): the gradient of sum(max(x, axis=axes) * g)."""
    axes = [a % x.ndim for a in axes]
    kept = [k for k in range(x.ndim) if k not in axes]
    group = int(np.prod([x.shape[a] for a in axes]))
    xt = np.transpose(x, kept + axes).reshape(tuple(x.shape[k] for k in kept) + (group,))
    pick = (np.argmax if kind == "max" else np.argmin)(xt, axis=-1)
    out = np.where(np.arange(xt.shape[-1]) == pick[..., None], np.asarray(g)[..., None], 0.0)
    out = out.reshape(tuple(x.shape[k] for k in kept) + tuple(x.shape[a] for a in axes))
    return np.transpose(out, np.argsort(kept + axes))

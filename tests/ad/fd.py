"""Finite differences and value trees for the differentiation tests (the independent oracle of
style.md, practice 8: nothing here calls diffc's derivative code).

A value is what diffc's Python API takes and returns: NumPy arrays, Python floats and ints,
tuples, and dicts for records. `leaves` flattens one (dict keys in sorted order), `rebuild`
puts leaves back into the shape of a template."""

from __future__ import annotations

import numpy as np

STEP = 1e-6
RTOL = 1e-6


def leaves(v) -> list[np.ndarray]:
    """The leaves of a value as arrays, depth first (record fields in sorted order)."""
    if isinstance(v, dict):
        return [x for k in sorted(v) for x in leaves(v[k])]
    if isinstance(v, tuple | list):
        return [x for item in v for x in leaves(item)]
    return [np.asarray(v)]


def rebuild(template, flat):
    """A value shaped like `template` whose leaves are taken in order from `flat`."""
    it = iter(flat)

    def go(t):
        if isinstance(t, dict):
            return {k: go(t[k]) for k in sorted(t)}
        if isinstance(t, tuple | list):
            return tuple(go(x) for x in t)
        x = np.asarray(next(it))
        return float(x) if x.ndim == 0 and x.dtype.kind == "f" else (int(x) if x.ndim == 0 else x)

    return go(template)


def is_float(v) -> bool:
    return np.asarray(v).dtype.kind == "f"


def structure(v):
    """The shape of a value with its leaves replaced by (dtype kind, shape): for comparing the
    structure of a gradient with that of its argument."""
    if isinstance(v, dict):
        return {k: structure(v[k]) for k in v}
    if isinstance(v, tuple):
        return tuple(structure(x) for x in v)
    a = np.asarray(v)
    return (a.dtype.kind, a.shape)


def inner(a, b) -> float:
    """The inner product of two values of one structure, summed over all leaves."""
    pairs = zip(leaves(a), leaves(b))
    return float(sum(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64)) for x, y in pairs))


def random_like(v, rng):
    """A random normal value shaped like v; integer and bool leaves get zeros."""
    return rebuild(
        v, [rng.normal(size=x.shape) if x.dtype.kind == "f" else np.zeros(x.shape, x.dtype) for x in leaves(v)]
    )


def axpy(a, x, y):
    """a * x + y, leaf by leaf; integer leaves of y are kept."""
    return rebuild(y, [yy + a * xx if yy.dtype.kind == "f" else yy for xx, yy in zip(leaves(x), leaves(y))])


def directional(fn, args: tuple, direction: tuple, step: float = STEP) -> list[np.ndarray]:
    """Central difference of fn(*args) along `direction` (shaped like args): the leaves of
    (fn(args + h d) - fn(args - h d)) / 2h."""
    plus = fn(*axpy(step, direction, args))
    minus = fn(*axpy(-step, direction, args))
    return [
        (np.asarray(p, np.float64) - np.asarray(m, np.float64)) / (2 * step)
        for p, m in zip(leaves(plus), leaves(minus))
    ]


def numerical_grad(fn, args: tuple, nums: tuple[int, ...], step: float = STEP) -> list[np.ndarray]:
    """The gradient of a scalar fn w.r.t. args[k] for k in nums, element by element, as the
    leaves of those arguments in order."""
    out = []
    zero = rebuild(args, [np.zeros(x.shape, x.dtype) for x in leaves(args)])
    for k in nums:
        for j, x in enumerate(leaves(args[k])):
            g = np.zeros(x.shape)
            for idx in np.ndindex(x.shape):
                e = [np.zeros(y.shape, y.dtype) for y in leaves(args[k])]
                e[j][idx] = 1.0
                d = zero[:k] + (rebuild(args[k], e),) + zero[k + 1 :]
                (g[idx],) = directional(fn, args, d, step)
            out.append(g)
    return out


def rel_err(a, b) -> float:
    """max |a - b| over max(|a|, |b|, 1), leaf by leaf of two values of one structure."""
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb), f"{len(la)} leaves vs {len(lb)}"
    worst = 0.0
    for x, y in zip(la, lb):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        assert x.shape == y.shape, f"shapes {x.shape} vs {y.shape}"
        scale = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(y), initial=0.0)), 1.0)
        worst = max(worst, float(np.max(np.abs(x - y), initial=0.0)) / scale)
    return worst


def assert_close(got, want, rtol: float = RTOL, what: str = ""):
    err = rel_err(got, want)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}\n got:  {got}\n want: {want}"

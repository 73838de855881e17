"""Checking the arguments of built-ins: arity, keywords, kinds of value, static shapes and
axes, each mistake reported in words at the call."""

from __future__ import annotations

import numpy as np

from ..errors import ShapeError, TypeError_
from ..ir.core import Var
from ..typesys import DType
from .values import FUNCTION_TYPES, describe

I64 = DType.I64


def arity(name, args, lo, hi=None):
    hi = lo if hi is None else hi
    if not lo <= len(args) <= hi:
        want = str(lo) if lo == hi else (f"{lo} to {hi}" if hi < 99 else f"at least {lo}")
        raise TypeError_(f"`{name}` takes {want} argument{'s' * (want != '1')}, got {len(args)}")


def allowed_kwargs(name, kwargs, allowed):
    for k in kwargs:
        if k not in allowed:
            ok = ", ".join(f"`{a}`" for a in allowed) or "none"
            raise TypeError_(f"`{name}` has no keyword argument `{k}` (it takes {ok})", misspelt=(k, allowed))


def tensor_arg(x, name, what="argument"):
    if not isinstance(x, Var):
        raise TypeError_(f"`{name}` needs an array or a number as its {what}, got {describe(x)}")
    return x


def func_arg(f, name):
    if not isinstance(f, FUNCTION_TYPES):
        raise TypeError_(f"`{name}` needs a function as its first argument, got {describe(f)}")
    return f


def static_shape(tr, v, name) -> tuple[int, ...]:
    """A shape argument: a list literal or shape(...) of ints known at compile time."""
    if isinstance(v, tuple):
        dims = tuple(tr.static_int(x, tr.span, f"a dimension in `{name}`") for x in v)
    elif isinstance(v, Var) and v.type.dtype is I64 and v.type.rank <= 1:
        if v.known is None:
            tr.not_known(v, tr.span, f"the shape of `{name}`")
        dims = tuple(int(d) for d in np.atleast_1d(v.known))
    else:
        dims = None
    if dims is not None:
        if any(d < 0 for d in dims):
            raise ShapeError(f"negative dimension in the shape {list(dims)} of `{name}`")
        return dims
    raise TypeError_(f"`{name}` needs a shape known at compile time, like [2, 3] or shape(x), got {describe(v)}")


def count_arg(tr, args, i: int, what: str, least: int = 0, most: int | None = None) -> int:
    """Argument `i`, a count or length known at compile time, in [least, most]; a mistake is
    reported at the argument."""
    span = tr.arg_span(i)
    n = tr.static_int(args[i], span, what)
    if n < least:
        raise ShapeError(f"{what} must be at least {least}, got {n}", span)
    if most is not None and n > most:
        raise ShapeError(f"{what} must be at most {most}, got {n}", span)
    return n


def axis_arg(tr, kwargs, name, rank, default=None):
    if "axis" not in kwargs:
        return default
    a = tr.static_int(kwargs["axis"], tr.span, f"the axis of `{name}`")
    if not -rank <= a < rank:
        raise ShapeError(f"axis {a} is out of range for an array of rank {rank} in `{name}`")
    return a % rank


def axes_arg(tr, kwargs, name, rank, several=True) -> tuple[int, ...] | None:
    """The `axis=` of a reduction: None when absent (all axes), else the axes it names, an int
    or (when several) a tuple or list of ints known at compile time, negative ones counted
    from the end, each at most once, in increasing order."""
    if "axis" not in kwargs:
        return None
    v = kwargs["axis"]
    what = f"the axis of `{name}`"
    if isinstance(v, tuple) or (isinstance(v, Var) and v.type.rank == 1):
        if not several:
            raise TypeError_(f"`{name}` takes one axis, got {describe(v)}")
        if isinstance(v, tuple):
            given = [tr.static_int(a, tr.span, f"an axis of `{name}`") for a in v]
        elif v.type.dtype is I64 and v.known is not None:
            given = [int(a) for a in v.known]
        else:
            raise TypeError_(f"{what} must be integers known at compile time, got {describe(v)}")
    else:
        given = [tr.static_int(v, tr.span, what)]
    axes = []
    for a in given:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for an array of rank {rank} in `{name}`")
        if a % rank in axes:
            raise ShapeError(f"axis {a} is repeated in the axes {given} of `{name}`")
        axes.append(a % rank)
    return tuple(sorted(axes))


def keepdims_arg(tr, kwargs, name) -> bool:
    """`keepdims=`: a bool known at compile time (false when absent)."""
    if "keepdims" not in kwargs:
        return False
    v = kwargs["keepdims"]
    if not (isinstance(v, Var) and v.type.rank == 0 and v.type.dtype is DType.BOOL and v.known is not None):
        raise TypeError_(f"`keepdims` of `{name}` must be `true` or `false`, got {describe(v)}")
    return bool(v.known)

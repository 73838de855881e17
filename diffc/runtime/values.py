"""Python values <-> the flat arrays a compiled function takes and returns, and the two
ways values are written out: DFL-style text and the JSON of `diffc run --json`."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from ..errors import UsageError
from ..pytree import TreeDef, flatten, unflatten
from ..specialise.values import Weak
from ..typesys import DType, TensorType, dtype_of_numpy


def to_array(v, where: str = "argument") -> np.ndarray:
    """A Python or NumPy value as a contiguous array of a DFL dtype."""
    if isinstance(v, bool | np.bool_):
        return np.asarray(v, dtype=np.bool_)
    if isinstance(v, int | np.integer):
        if not -(2**63) <= v < 2**63:
            raise UsageError(f"{where}: {v} does not fit in a 64-bit int")
        return np.asarray(v, dtype=np.int64)
    if isinstance(v, float | np.floating) and not isinstance(v, np.float32):
        return np.asarray(v, dtype=np.float64)
    try:
        a = np.asarray(v)
    except (ValueError, TypeError):
        raise UsageError(f"{where}: cannot make an array of {type(v).__name__}") from None
    dt = dtype_of_numpy(a.dtype)
    if dt is None:
        raise UsageError(f"{where}: arrays of {a.dtype} are not supported (use float, int or bool)")
    b = np.require(a, dtype=dt.np, requirements="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    if not np.can_cast(a.dtype, dt.np, "safe") and not _same_values(a, b):
        raise UsageError(
            f"{where}: {a.dtype} values that {dt} cannot hold exactly (such as {_first_changed(a, b)}): "
            f"convert them first"
        )
    return b


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where converting `a` to `b` changed the value (a uint64 above 2**63 - 1 wraps, a long
    double rounds)."""
    if a.dtype.kind in "iu":
        return a > np.iinfo(np.int64).max
    with np.errstate(all="ignore"):
        return (b.astype(a.dtype) != a) & ~(np.isnan(a) & np.isnan(b))


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return not _changed(a, b).any()


def _first_changed(a: np.ndarray, b: np.ndarray):
    return a[_changed(a, b)].flat[0] if a.ndim else a.item()


def _check_fields(v) -> None:
    """A dict argument is a record: its keys are field names."""
    for k in v:
        if not isinstance(k, str):
            raise UsageError(f"a record's field names must be strings, got {k!r} in a dict argument")


def flatten_args(args, names=()) -> tuple[list[np.ndarray], TreeDef]:
    """Flatten Python arguments (tuples, dicts, dataclasses and named tuples as records,
    arrays, numbers); a value that is not one is a UsageError naming the argument (by
    position, and by `names` when given). A Python float is weak, as a number literal is:
    next to f32 arrays it is a WeakFloat, an f32 in the program (a learning rate keeps an f32
    model f32), while a NumPy float64 is strong, as in NumPy and JAX."""
    if any(_is_record_object(a) for a in _walk(args)):  # (walks every dict: checks its keys)
        args = plain_records(args)
    leaves, tree = flatten(tuple(args), is_record=lambda v: isinstance(v, dict), record_items=lambda v: v.items())
    arrays = []
    for k, child in enumerate(tree.children):
        where = f"argument {k}" + (f" (`{names[k]}`)" if k < len(names) else "")
        arrays.extend(to_array(x, where) for x in leaves[len(arrays) : len(arrays) + child.num_leaves])
    if any(a.dtype == np.float32 for a in arrays):  # Python floats are weak, as literals are
        arrays = [a.view(WeakFloat) if type(x) is float else a for x, a in zip(leaves, arrays)]
    return arrays, tree


class WeakFloat(np.ndarray):
    """A Python float passed next to f32 arrays: an f64 at the call (so the direct entry takes
    a Python float for it), typed Weak, so an f32 in the program."""


def _is_record_object(v) -> bool:
    """A dataclass instance or a named tuple: a record, its fields by name, as a dict is."""
    return (isinstance(v, tuple) and hasattr(v, "_fields")) or (dataclasses.is_dataclass(v) and not isinstance(v, type))


def _fields(v) -> dict:
    if isinstance(v, tuple):
        return dict(zip(v._fields, v))
    return {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}


def _walk(v):
    yield v
    if isinstance(v, tuple):
        for x in v:
            yield from _walk(x)
    elif isinstance(v, dict):
        _check_fields(v)
        for x in v.values():
            yield from _walk(x)
    elif _is_record_object(v):
        for x in _fields(v).values():
            yield from _walk(x)


def plain_records(v):
    """The tree with each dataclass instance and named tuple made a dict of its fields."""
    if _is_record_object(v):
        return {k: plain_records(x) for k, x in _fields(v).items()}
    if isinstance(v, tuple):
        return tuple(plain_records(x) for x in v)
    if isinstance(v, dict):
        _check_fields(v)  # (the walk that found a record object may have stopped before this dict)
        return {k: plain_records(x) for k, x in v.items()}
    return v


def type_of(a: np.ndarray) -> TensorType | Weak:
    t = TensorType(dtype_of_numpy(a.dtype), a.shape)
    return Weak(t) if type(a) is WeakFloat else t


def to_python(leaves: list[np.ndarray], tree: TreeDef):
    """Outputs for a Python caller: scalars as Python numbers, arrays as NumPy, records as dicts."""
    vals = [a.item() if isinstance(a, np.ndarray) and a.ndim == 0 else a for a in leaves]
    return unflatten(tree, vals, make_record=dict)


# --- writing values ----------------------------------------------------------------------------


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return repr(float(x))


def _scalar_text(x, dtype: DType) -> str:
    if dtype is DType.BOOL:
        return "true" if x else "false"
    if dtype is DType.I64:
        return str(int(x))
    return _float_text(float(x))


def _array_text(a: np.ndarray, dtype: DType) -> str:
    if a.ndim == 0:
        return _scalar_text(a.item(), dtype)
    return "[" + ", ".join(_array_text(x, dtype) for x in a) + "]"


def value_json(v) -> str:
    """One line of JSON: tuples are lists, records objects, floats always with a fraction."""
    if isinstance(v, tuple):
        return "[" + ", ".join(value_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {value_json(x)}" for k, x in v.items()) + "}"
    a = np.asarray(v)
    return _array_text(a, dtype_of_numpy(a.dtype))


def value_text(v) -> str:
    """DFL-style text: tuples in parentheses, records in braces, arrays as nested lists."""
    if isinstance(v, tuple):
        return "(" + ", ".join(value_text(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {value_text(x)}" for k, x in v.items()) + "}"
    a = np.asarray(v)
    return _array_text(a, dtype_of_numpy(a.dtype))

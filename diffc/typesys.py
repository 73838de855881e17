"""Types of IR values: every IR value is a tensor with a dtype and a static shape (a scalar is
a rank-0 tensor). Tuples, records and functions exist only at specialisation time and are
flattened away before the IR, as JAX flattens pytrees."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class DType(Enum):
    BOOL = "bool"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"

    @property
    def is_float(self) -> bool:
        return self in (DType.F32, DType.F64)

    @property
    def np(self) -> np.dtype:
        return _NP[self]

    @property
    def itemsize(self) -> int:
        return _NP[self].itemsize

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


_NP = {
    DType.BOOL: np.dtype(np.bool_),
    DType.I64: np.dtype(np.int64),
    DType.F32: np.dtype(np.float32),
    DType.F64: np.dtype(np.float64),
}
_RANK = {DType.BOOL: 0, DType.I64: 1, DType.F32: 2, DType.F64: 3}

f64, f32, i64, boolean = DType.F64, DType.F32, DType.I64, DType.BOOL


def dtype_of_numpy(dt: np.dtype) -> DType | None:
    """The DType that holds values of a NumPy dtype (ints become i64), or None."""
    if dt == np.bool_:
        return DType.BOOL
    if np.issubdtype(dt, np.integer):
        return DType.I64
    if dt == np.float32:
        return DType.F32
    if np.issubdtype(dt, np.floating):
        return DType.F64
    return None


def promote(a: DType, b: DType) -> DType:
    """The dtype arithmetic on a and b computes in: bool < i64 < f32 < f64."""
    return a if _RANK[a] >= _RANK[b] else b


# No array may take more bytes than this: beyond any machine's memory, and far from the i64
# overflow of byte counts and offsets in native code (checked by ir.build.Builder.emit).
MAX_BYTES = 1 << 48


@dataclass(frozen=True)
class TensorType:
    dtype: DType
    shape: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def with_shape(self, shape) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def __repr__(self) -> str:
        if not self.shape:
            return str(self.dtype)
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"

    __str__ = __repr__


def scalar(dtype: DType) -> TensorType:
    return TensorType(dtype, ())


def index_type() -> TensorType:
    """A loop index, an iteration count."""
    return TensorType(DType.I64, ())


def row_type(t: TensorType) -> TensorType:
    """The type of one row of t (the inverse of stacked): what a loop body sees of an array
    it runs over."""
    return t.with_shape(t.shape[1:])


def stacked(t: TensorType, n: int) -> TensorType:
    """n rows of type t: what a loop returns of a value its body makes per iteration."""
    return t.with_shape((n,) + t.shape)


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy's broadcasting of shapes, or None when they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(rank):
        dims = {s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0}
        dims.discard(1)
        if len(dims) > 1:
            return None
        out.append(dims.pop() if dims else 1)
    return tuple(out)

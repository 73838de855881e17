"""diffc: a compiler for DFL, a small differentiable functional language, to native code.

m = diffc.load("prog.dfl")       # or diffc.compile(source)
m.loss(params, xs, target)       # NumPy arrays, numbers, dicts and tuples in and out
"""

from .api import Function, Module, compile, grad, jvp, load, value_and_grad, vjp
from .errors import (
    BoundsError,
    DiffcError,
    DiffcMemoryError,
    DiffcNameError,
    DiffcSyntaxError,
    DiffcTypeError,
    InternalError,
    RecursionDepthError,
    ShapeError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "load",
    "compile",
    "grad",
    "value_and_grad",
    "jvp",
    "vjp",
    "Module",
    "Function",
    "DiffcError",
    "DiffcSyntaxError",
    "DiffcNameError",
    "DiffcTypeError",
    "ShapeError",
    "BoundsError",
    "RecursionDepthError",
    "DiffcMemoryError",
    "UsageError",
    "InternalError",
]

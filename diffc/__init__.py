"""diffc: a compiler for DFL, a small differentiable functional language, to native code.

m = diffc.load("prog.dfl")       # or diffc.compile(source)
m.loss(params, xs, target)       # NumPy arrays, numbers, dicts and tuples in and out
diffc.save("params.npz", params) # and diffc.load_tree("params.npz") reads them back
"""

from .api import (
    Function,
    Module,
    compile,
    get_threads,
    grad,
    jvp,
    load,
    load_tree,
    save,
    set_flush_denormal,
    set_threads,
    value_and_grad,
    vjp,
)
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


def load_ipython_extension(ipython) -> None:
    """`%load_ext diffc` in IPython or Jupyter: adds the `%%dfl` cell magic (diffc/notebook.py).
    Imported here on demand, so that `import diffc` needs no IPython."""
    from . import notebook

    notebook.load_ipython_extension(ipython)


__all__ = [
    "load",
    "compile",
    "save",
    "load_tree",
    "set_threads",
    "set_flush_denormal",
    "get_threads",
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

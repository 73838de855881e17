"""IPython and Jupyter: `%load_ext diffc`, then a `%%dfl` cell is a DFL program whose
functions become callables of the notebook (diffc Functions: NumPy in and out).

`%%dfl` binds each function of the cell under its own name and the whole module as `dfl`,
or under the name given: `%%dfl model`. A mistake is printed as in a file, located at the
line of the cell (reported as `<cell>`; line 1 is `%%dfl`), without a Python traceback, and
fails the cell (so "run all" stops there); so is any DiffcError a diffc function raises in
the notebook (an index out of bounds at run time). Imports are looked up in the notebook's
current folder, then in the standard library."""

from __future__ import annotations

import sys

from . import api
from .errors import DiffcError, UsageError

CELL_NAME = "<cell>"


def dfl_cell(shell, line: str, cell: str) -> None:
    """Compile the cell and bind its functions, and the module, in the user's namespace."""
    alias = line.strip() or "dfl"
    if not alias.isidentifier():
        raise UsageError(f"%%dfl: expected a Python name for the module, got {alias!r}")
    module = api.compile("\n" + cell, name=CELL_NAME)  # (line 1 is the `%%dfl` line)
    shell.user_ns[alias] = module
    for name in module.ast.fns:
        shell.user_ns[name] = module.function(name)


def _show_error(shell, etype, error, tb, tb_offset=None) -> list:
    """IPython's handler of a DiffcError: the located message, as in a file, and no traceback."""
    print(error.render(), file=sys.stderr)
    return []


def load_ipython_extension(shell) -> None:
    """Register the `%%dfl` cell magic (IPython calls this for `%load_ext diffc`)."""
    shell.set_custom_exc((DiffcError,), _show_error)
    shell.register_magic_function(lambda line, cell: dfl_cell(shell, line, cell), magic_kind="cell", magic_name="dfl")

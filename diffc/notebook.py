"""IPython and Jupyter: `%load_ext diffc`, then a `%%dfl` cell is a DFL program whose
functions become callables of the notebook (diffc Functions: NumPy in and out).

`%%dfl` binds each function of the cell under its own name and the whole module as `dfl`,
or under the name given: `%%dfl model`. A mistake is printed as in a file, located at the
line of the cell (reported as `<cell>`; line 1 is `%%dfl`), without a Python traceback. Imports are looked up
in the notebook's current folder, then in the standard library."""

from __future__ import annotations

import sys

from . import api
from .errors import DiffcError

CELL_NAME = "<cell>"


def dfl_cell(shell, line: str, cell: str) -> None:
    """Compile the cell and bind its functions, and the module, in the user's namespace."""
    alias = line.strip() or "dfl"
    if not alias.isidentifier():
        print(f"%%dfl: expected a Python name for the module, got {alias!r}", file=sys.stderr)
        return
    try:
        module = api.compile("\n" + cell, name=CELL_NAME)  # (line 1 is the `%%dfl` line)
    except DiffcError as e:
        print(e.render(), file=sys.stderr)
        return
    shell.user_ns[alias] = module
    for name in module.ast.fns:
        shell.user_ns[name] = module.function(name)


def load_ipython_extension(shell) -> None:
    """Register the `%%dfl` cell magic (IPython calls this for `%load_ext diffc`)."""
    shell.register_magic_function(lambda line, cell: dfl_cell(shell, line, cell), magic_kind="cell", magic_name="dfl")

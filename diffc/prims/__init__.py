"""Primitives: each declared once (prims/core.py) with all of its rules. Importing the package
imports every family, so the registry is complete whichever module was asked for."""

from . import (  # noqa: F401
    call,
    checkpoint,
    cond,
    cumulative,
    elementwise,
    io,
    linalg,
    map_,
    random,
    reduce,
    scan,
    shape,
    sort,
    tape,
    while_,
)

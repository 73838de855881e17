"""Primitives: each declared once (prims/core.py) with all of its rules. Importing the package
imports every family, so the registry is complete whichever module was asked for."""

# ops (the rules' emitting helpers) and the primitive modules import each other: ops first,
# whichever module is asked for, so that it loads them in an order that completes each
from . import ops  # noqa: F401, I001
from . import call, checkpoint, cond, elementwise, io, linalg, map_, random, reduce, scan, shape, tape, while_  # noqa: F401

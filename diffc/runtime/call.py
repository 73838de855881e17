"""Calling compiled code: flat NumPy buffers in and out through ctypes, failures reported
by native code (in the ctx words) raised as DiffcErrors located in the program, and print
calls from native code formatted here."""

from __future__ import annotations

import ctypes
import sys

import llvmlite.binding as llvm
import numpy as np

from ..errors import BoundsError, RecursionDepthError
from ..lower.emit import CTX_A, CTX_ARENA, CTX_B, CTX_ERR, CTX_SITE, CTX_WORDS, ERR_BOUNDS, ERR_DEPTH
from ..lower.llvm import ENTRY_SYMBOL
from ..prims.io import PRINT_SITES, PRINT_SYMBOL
from ..pytree import unflatten
from .values import value_text

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_PRINT = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)


def _read(ptr: int, t) -> np.ndarray:
    buf = (ctypes.c_char * max(t.nbytes, 1)).from_address(ptr)
    return np.frombuffer(buf, dtype=t.dtype.np, count=t.size).reshape(t.shape).copy()


@_PRINT
def _print_callback(site: int, ptrs: int):
    label, tree, types = PRINT_SITES[site]
    addrs = (ctypes.c_void_p * max(len(types), 1)).from_address(ptrs)
    vals = [_read(addrs[k], t) for k, t in enumerate(types)]
    parts = [value_text(x) for x in unflatten(tree, [v.item() if v.ndim == 0 else v for v in vals], make_record=dict)]
    sys.stdout.write(" ".join(([label] if label else []) + parts) + "\n")


def register_symbols():
    """Make the runtime's functions visible to the code that MCJIT links."""
    llvm.add_symbol(PRINT_SYMBOL, ctypes.cast(_print_callback, ctypes.c_void_p).value)


class NativeFunction:
    """A compiled entry point: call it with a list of contiguous arrays of the right types."""

    def __init__(self, compiled, sites, in_types, out_types, arena_bytes: int = 0):
        self.compiled = compiled  # keeps the machine code alive
        self.sites = sites
        self.in_types = in_types
        self.out_types = out_types
        self.cfunc = _ENTRY(compiled.address(ENTRY_SYMBOL))
        self._out_ptrs = (ctypes.c_void_p * max(len(out_types), 1))()
        self._in_ptrs = (ctypes.c_void_p * max(len(in_types), 1))()
        # the entry function's arena, reused by every call (See Note [Arenas] in lower/emit.py);
        # calls of one compiled function from several threads at once are not supported
        self._arena = np.empty(arena_bytes + 64, dtype=np.uint8)
        self._ctx = np.zeros(CTX_WORDS, dtype=np.int64)
        self._ctx[CTX_ARENA] = (self._arena.ctypes.data + 63) // 64 * 64
        self._ctx_ptr = self._ctx.ctypes.data

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        ctx = self._ctx
        ctx[:CTX_ARENA] = 0
        outs = [np.empty(t.shape, dtype=t.dtype.np) for t in self.out_types]
        ins = self._in_ptrs
        for k, a in enumerate(arrays):
            ins[k] = a.ctypes.data
        for k, o in enumerate(outs):
            self._out_ptrs[k] = o.ctypes.data
        self.cfunc(self._ctx_ptr, ins, self._out_ptrs)
        if PRINT_SITES:
            sys.stdout.flush()
        if ctx[CTX_ERR]:
            raise self._error(ctx)
        return outs

    def _error(self, ctx):
        site = self.sites[int(ctx[CTX_SITE])]
        a, b = int(ctx[CTX_A]), int(ctx[CTX_B])
        if ctx[CTX_ERR] == ERR_BOUNDS:
            return BoundsError(f"{site.what} {a} is out of bounds for an axis of length {b}", site.span)
        if ctx[CTX_ERR] == ERR_DEPTH:
            return RecursionDepthError(
                f"recursion too deep: more than {b} nested calls of `{site.what.split('.')[0]}`"
                " (is a base case missing?)",
                site.span,
            )
        return RecursionDepthError("native code failed", site.span)

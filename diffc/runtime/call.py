"""Calling compiled code: flat NumPy buffers in and out through ctypes, failures reported
by native code (in the ctx words) raised as DiffcErrors located in the program (and Ctrl-C
as KeyboardInterrupt), and print calls from native code formatted here."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
import weakref

import llvmlite.binding as llvm
import numpy as np

from ..errors import BoundsError, DiffcMemoryError, RecursionDepthError, bytes_text
from ..lower import pyentry
from ..lower.emit import (
    CTX_A,
    CTX_ARENA,
    CTX_B,
    CTX_DEPTH,
    CTX_ERR,
    CTX_SITE,
    CTX_STACK,
    CTX_WORDS,
    ERR_BOUNDS,
    ERR_CALLBACK,
    ERR_DEPTH,
    ERR_INTERRUPT,
    ERR_MEMORY,
    ERR_NEGATIVE,
    ERR_STACK,
    FLUSH_SYMBOL,
    X86,
)
from ..lower.llvm import ENTRY_SYMBOL
from ..lower.pyentry import PYALLOCS_SYMBOL, PYCALL_SYMBOL, PYCTX_SYMBOL, PYSTACK_SYMBOL
from ..prims.io import PRINT_BASE, PRINT_SYMBOL
from ..pytree import unflatten
from . import interrupt, stack, threads
from .values import value_text

_print_sites_lock, _direct_lock = threading.Lock(), threading.Lock()
# Every print site of every loaded program has an id here, (label, tree, types) by id, from
# when the program's code is loaded until it is freed (See prims/io.py for the numbering).
PRINT_SITES: dict[int, tuple] = {}
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_PRINT = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)
_callback_errors: dict[int, BaseException] = {}  # by the address of the ctx of the failed call


class ResultMemory:
    """Memory for large results, given again to a later result of the same size once no array
    made on it is alive (See Note [Result memory])."""

    MIN_BYTES = 1 << 17  # results smaller than this are np.empty's
    MAX_BYTES = 1 << 28  # the memory it keeps at most, in use or not
    PER_SIZE = 4  # the buffers of one size it keeps at most (a loop holds a call's results or two)

    def __init__(self):
        self._buffers: dict[int, list[np.ndarray]] = {}  # size -> its buffers (uint8), free or not
        self._bytes = 0
        self._lock = threading.Lock()

    def maker(self, t):
        """A callable making an array of type t: np.empty's for a small one (a C call: this
        costs nothing more than it did), else one on this memory."""
        if t.nbytes < self.MIN_BYTES:
            return functools.partial(np.empty, t.shape, t.dtype.np)
        return functools.partial(self.empty, t.shape, t.dtype.np, t.nbytes)

    def empty(self, shape, dtype, n: int) -> np.ndarray:
        """An array of this shape and dtype, of n bytes, on a buffer of this memory."""
        with self._lock:
            buffers = self._buffers.setdefault(n, [])
            buf = next((b for b in buffers if sys.getrefcount(b) == _FREE), None)
            if buf is None:
                buf = np.empty(n, np.uint8)
                if self._bytes + n > self.MAX_BYTES:
                    self._drop_free()
                if self._bytes + n <= self.MAX_BYTES and len(buffers) < self.PER_SIZE:
                    buffers.append(buf)
                    self._bytes += n
            return buf.view(dtype).reshape(shape)

    def _drop_free(self):
        """Let go of every buffer no array holds."""
        for n, buffers in self._buffers.items():
            kept = [b for b in buffers if sys.getrefcount(b) > _FREE]
            self._bytes -= n * (len(buffers) - len(kept))
            buffers[:] = kept


# the references to a buffer that no array holds, as `next` above and the comprehension see it:
# its list's, the generator's variable and getrefcount's argument
_FREE = 3
RESULTS = ResultMemory()
os.register_at_fork(after_in_child=lambda: setattr(RESULTS, "_lock", threading.Lock()))  # (held by another thread)


# Note [Result memory]
# ~~~~~~~~~~~~~~~~~~~~
# glibc gives the memory freed at the top of its heap back to the system once it exceeds a
# threshold that follows the largest block freed, so a program whose results together are larger
# than twice its largest one has them made on fresh pages at every call, which the kernel
# faults in and zeroes: a transformer block's value-and-grad (b8 t256 d256 f32), whose 17
# gradients make 3 MiB, took 788 page faults a call. A result of MIN_BYTES or more is now made
# on a buffer of ResultMemory, which a later result of the same size reuses once no array made
# on it is alive: each array made on a buffer (and each view of one) holds the buffer as its
# base, so the buffer's reference count says when none is left. New arrays each time (no old
# result is ever given back as a new one); the memory kept is bounded by MAX_BYTES (and
# PER_SIZE buffers of a size), and buffers no array holds are let go to make room. A smaller
# result is np.empty's, called from C as before (`maker` chooses once per result: sizing each
# call in Python cost 4 us). The same value-and-grad: 38 page faults a call, 3-5% faster in
# f32 and 1-4% in f64 (in turns).


def _read(ptr: int, t) -> np.ndarray:
    buf = (ctypes.c_char * max(t.nbytes, 1)).from_address(ptr)
    return np.frombuffer(buf, dtype=t.dtype.np, count=t.size).reshape(t.shape).copy()


@_PRINT
def _print_callback(site: int, ptrs: int, ctx: int):
    try:
        label, tree, types = PRINT_SITES[site]
        addrs = (ctypes.c_void_p * max(len(types), 1)).from_address(ptrs)
        vals = [_read(addrs[k], t) for k, t in enumerate(types)]
        tree = unflatten(tree, [v.item() if v.ndim == 0 else v for v in vals], make_record=dict)
        sys.stdout.write(" ".join(([label] if label else []) + [value_text(x) for x in tree]) + "\n")
    except BaseException as e:  # (ctypes would print it and go on): the call stops, and raises it
        _callback_errors[ctx] = e
        ctypes.c_int64.from_address(ctx + 8 * CTX_ERR).value = ERR_CALLBACK


# nonzero: calls flush subnormal floats to zero (See Note [Subnormal floats] in lower/emit.py)
FLUSH_DENORMAL = ctypes.c_int64(X86 and os.environ.get("DIFFC_FLUSH_DENORMAL", "0") not in ("", "0"))


def set_flush_denormal(on: bool) -> bool:
    """Whether calls flush subnormal floats to zero; False where the CPU cannot (not x86-64)."""
    FLUSH_DENORMAL.value = bool(on) and X86
    return bool(FLUSH_DENORMAL.value) == bool(on)


@functools.cache
def register_symbols():
    """Make the runtime's functions, and the C API the direct Python entry calls, visible to
    the code that MCJIT links."""
    llvm.add_symbol(PRINT_SYMBOL, ctypes.cast(_print_callback, ctypes.c_void_p).value)
    interrupt.register_symbols()
    threads.register_symbols()
    llvm.add_symbol(FLUSH_SYMBOL, ctypes.addressof(FLUSH_DENORMAL))
    for name, address in pyentry.symbol_addresses().items():
        llvm.add_symbol(name, address)


_check_signals = ctypes.pythonapi.PyErr_CheckSignals  # runs Python's signal handlers; raises what they raise
_next_print_id = 0


def _print_ids(n: int) -> int:
    """The first of n print-site ids never given before (a freed program's are not reused)."""
    global _next_print_id
    with _print_sites_lock:  # (another thread may be loading a program)
        base, _next_print_id = _next_print_id, _next_print_id + n
    return base


def _forget_print_sites(ids) -> None:
    for k in ids:
        PRINT_SITES.pop(k, None)


def out_of_memory(nbytes: int, what: str, span) -> DiffcMemoryError:
    return DiffcMemoryError(f"out of memory: cannot allocate {bytes_text(nbytes)} for {what}", span)


FELL_BACK = object()  # what a flat direct entry returns for a call it did not take


def _fell_back(*args):
    return FELL_BACK


class _MethodDef(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("meth", ctypes.c_void_p), ("flags", ctypes.c_int), ("doc", ctypes.c_char_p)]


_METH_FASTCALL_KEYWORDS = 0x80 | 0x02
_new_builtin = ctypes.pythonapi.PyCFunction_NewEx
_new_builtin.restype = ctypes.py_object
_new_builtin.argtypes = [ctypes.c_void_p, ctypes.py_object, ctypes.py_object]


_CTYPES = {"f64": ctypes.c_double, "f32": ctypes.c_float, "i64": ctypes.c_int64, "bool": ctypes.c_bool}


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]  # (much cheaper than a.ctypes.data)


if pyentry.ARRAY is not None:  # read where the ndarray keeps it: 15x cheaper again (0.1 us)
    _DATA, _word_at = pyentry.ARRAY["data"], ctypes.c_void_p.from_address

    def _address(a: np.ndarray) -> int:  # noqa: F811 (the layout is known)
        return _word_at(id(a) + _DATA).value


class _Frame:
    """What one call in flight owns: its ctx, the entry function's arena (reused by the calls
    that take this frame after it, See Note [Arenas] in lower/emit.py), the in and out pointer
    arrays and the slots of scalar arguments and results."""

    def __init__(self, in_types, out_types, arena_bytes: int, empty):
        self.out_ptrs = (ctypes.c_void_p * max(len(out_types), 1))()
        self.in_ptrs = (ctypes.c_void_p * max(len(in_types), 1))()
        n = arena_bytes + 64
        self.arena = empty(n, "the arrays", functools.partial(np.empty, n, np.uint8))
        self.ctx = (ctypes.c_int64 * CTX_WORDS)()
        self.ctx[CTX_ARENA] = (_address(self.arena) + 63) // 64 * 64
        self.ctx_ptr = ctypes.addressof(self.ctx)
        self.scalar_outs = {k: _CTYPES[t.dtype.value]() for k, t in enumerate(out_types) if t.rank == 0}
        for k, slot in self.scalar_outs.items():
            self.out_ptrs[k] = ctypes.addressof(slot)
        self.scalar_ins = [_CTYPES[t.dtype.value]() if t.rank == 0 else None for t in in_types]
        self.reset_ins()

    def reset_ins(self):
        """Point the scalar parameters at their slots again (a call of arrays overwrites them)."""
        for k, slot in enumerate(self.scalar_ins):
            if slot is not None:
                self.in_ptrs[k] = ctypes.addressof(slot)


class NativeFunction:
    """A compiled entry point: call it with a list of contiguous arrays of the right types, or
    call_scalars with Python numbers for its scalar parameters (the fast path of small calls).
    Scalar results come back as Python numbers, array results as new NumPy arrays.

    Calls may come from several threads at once (this path releases the GIL) and from inside
    a call (a print hook): each call takes a frame of its own from a pool, which holds one
    frame when calls do not overlap. The direct entry has a frame of its own."""

    def __init__(
        self, compiled, sites, in_types, out_types, arena_bytes: int = 0, prints=(), name: str = "?", span=None
    ):
        self.compiled = compiled  # keeps the machine code alive
        self.name, self.span = name, span  # the entry function's: where the runtime's allocations fail
        if prints:  # number this program's print sites after those already loaded
            base = _print_ids(len(prints))
            ctypes.c_int64.from_address(compiled.global_address(PRINT_BASE)).value = base
            ids = range(base, base + len(prints))
            PRINT_SITES.update(zip(ids, prints))
            weakref.finalize(self, _forget_print_sites, ids)
        self.sites = sites
        self.in_types = in_types
        self.out_types = out_types
        self.arena_bytes = arena_bytes
        self.cfunc = _ENTRY(compiled.address(ENTRY_SYMBOL))
        self._frames = [self._frame()]  # the free ones
        self._array_outs = [(k, t, RESULTS.maker(t)) for k, t in enumerate(out_types) if t.rank]
        self._direct = self._methoddef = self._direct_frame = self._pystack = None
        self._no_direct = False
        self.static: tuple[int, ...] = ()  # the leaves compiled for their values (pipeline.compile_native)
        self.general_only = False  # its direct entry would take calls of another signature (api.py)
        interrupt.ensure()

    def direct(self, fallback):
        """The built-in function of lower/pyentry.py, or None if this function has none: called
        with the arguments, it returns the result, or what fallback(*args) returns when the
        arguments are not of its signature or the native code failed. Made once while it lives;
        it keeps this NativeFunction, and so the machine code it calls, alive."""
        with _direct_lock:  # (two threads must not both make one: its ctx would be the other's)
            made = self._direct() if self._direct is not None else None
            if made is None and self._prepare_direct():
                made = _new_builtin(ctypes.byref(self._methoddef), fallback, self)
                self._direct = weakref.ref(made)
            return made

    def flat_direct(self):
        """Another built-in of the same code, for the leaves of records: called with them, it
        returns the result (a record as the tuple of its fields) or, when the arguments are
        not taken or the native code failed, FELL_BACK. None if this function has none. (Its
        caller keeps it: it refers back to this NativeFunction, as the direct entry does.)"""
        with _direct_lock:
            if not self._prepare_direct():
                return None
            return _new_builtin(ctypes.byref(self._methoddef), _fell_back, self)

    def _prepare_direct(self) -> bool:
        """Give the direct entry's code its frame, stack record and allocators, once; whether
        this function has a direct entry."""
        if self._no_direct:
            return False
        if self._methoddef is None:
            address = self.compiled.address(PYCALL_SYMBOL)
            if not address:
                self._no_direct = True
                return None
            # it holds the GIL, so its calls never overlap: one frame, taken from the pool for
            # good (its arena, touched by the calls before, is not made and touched again: a
            # transformer block's value-and-grad ran its second call 4x slower for that)
            self._direct_frame = self._take()
            ctypes.c_void_p.from_address(self.compiled.global_address(PYCTX_SYMBOL)).value = self._direct_frame.ctx_ptr
            self._pystack = ctypes.c_void_p.from_address(self.compiled.global_address(PYSTACK_SYMBOL))
            self._pystack.value = ctypes.addressof(stack.record())
            # (they must outlive the built-in)
            self._allocators = [RESULTS.maker(t) if t.rank else None for t in self.out_types]
            table = self.compiled.global_address(PYALLOCS_SYMBOL)
            for k, alloc in enumerate(self._allocators):
                if alloc is not None:
                    ctypes.c_void_p.from_address(table + k * ctypes.sizeof(ctypes.c_void_p)).value = id(alloc)
            self._methoddef = _MethodDef(b"diffc_pycall", address, _METH_FASTCALL_KEYWORDS, None)
        # a built-in's module slot holds self: the code, frame, allocators and method record
        # outlive every built-in made from them; a weak reference back, so no cycle delays
        # freeing them
        return True

    def direct_made_for(self, entry) -> bool:
        """Whether `entry` is this function's direct entry."""
        return self._direct is not None and self._direct() is entry

    def __call__(self, arrays: list[np.ndarray]) -> list:
        frame = self._take()
        try:
            for k, a in enumerate(arrays):
                frame.in_ptrs[k] = _address(a)
            return self._run(frame)
        finally:
            frame.reset_ins()
            self._frames.append(frame)

    def call_scalars(self, values) -> list:
        """Call with Python numbers for scalar parameters and arrays for the others."""
        frame = self._take()
        try:
            ins = frame.in_ptrs
            for k, (slot, v) in enumerate(zip(frame.scalar_ins, values)):
                if slot is None:
                    ins[k] = _address(v)
                else:
                    slot.value = v  # its address is already in ins
            return self._run(frame)
        finally:
            self._frames.append(frame)

    def _take(self) -> _Frame:
        try:
            return self._frames.pop()  # (atomic under the GIL)
        except IndexError:  # every frame is in a call: another thread's, or this one's caller
            return self._frame()

    def _frame(self) -> _Frame:
        return _Frame(self.in_types, self.out_types, self.arena_bytes, self._empty)

    def _run(self, frame: _Frame) -> list:
        interrupt.ensure()
        ctx = frame.ctx
        ctx[CTX_ERR] = ctx[CTX_DEPTH] = 0
        here = stack.record()
        ctx[CTX_STACK] = here[2]
        if self._pystack is not None:  # the direct entry's next calls from this thread
            self._pystack.value = ctypes.addressof(here)
        outs = [None] * len(self.out_types)
        for k, t, make in self._array_outs:
            o = outs[k] = self._empty(t.nbytes, "the result", make)
            frame.out_ptrs[k] = _address(o)
        self.cfunc(frame.ctx_ptr, frame.in_ptrs, frame.out_ptrs)
        if PRINT_SITES:
            sys.stdout.flush()
        if ctx[CTX_ERR]:
            raise self._error(ctx)
        for k, slot in frame.scalar_outs.items():
            outs[k] = slot.value
        return outs

    def _empty(self, nbytes: int, what: str, make) -> np.ndarray:
        """make() (an array of nbytes), or a DiffcMemoryError that names the size and the
        function."""
        try:
            return make()
        except MemoryError:
            raise out_of_memory(nbytes, f"{what} of `{self.name}`", self.span) from None

    def _error(self, ctx):
        if ctx[CTX_ERR] == ERR_CALLBACK:
            return _callback_errors.pop(ctypes.addressof(ctx))
        if ctx[CTX_ERR] == ERR_INTERRUPT:  # Python's handlers raise KeyboardInterrupt, or it is raised here
            _check_signals()
            return KeyboardInterrupt()
        site = self.sites[int(ctx[CTX_SITE])]
        a, b = int(ctx[CTX_A]), int(ctx[CTX_B])
        if ctx[CTX_ERR] == ERR_MEMORY:
            return out_of_memory(a, site.what, site.span)
        if ctx[CTX_ERR] == ERR_BOUNDS:
            return BoundsError(f"{site.what} {a} is out of bounds for an axis of length {b}", site.span)
        if ctx[CTX_ERR] == ERR_NEGATIVE:
            return BoundsError(f"{site.what} is {a}: it must be 0 or more", site.span)
        if ctx[CTX_ERR] == ERR_STACK:
            return RecursionDepthError(
                f"recursion too deep: {a} nested calls of `{site.what.split('.')[0]}` fill the native stack"
                " (is a base case missing?)",
                site.span,
            )
        if ctx[CTX_ERR] == ERR_DEPTH:
            return RecursionDepthError(
                f"recursion too deep: more than {b} nested calls of `{site.what.split('.')[0]}`"
                " (is a base case missing?)",
                site.span,
            )
        return RecursionDepthError("native code failed", site.span)

"""Ctrl-C in native code (See Note [Interrupts] in lower/emit.py): a C-level SIGINT handler,
emitted in LLVM IR, that counts the signal in `diffc_sigints`, which generated code polls, and
then calls the handler it replaced (Python's), so that Python still sees the signal.

It is installed only while SIGINT has Python's default handler (KeyboardInterrupt): with a
handler of the user's own, native code runs to its end and the handler runs when the call
returns, as for any C extension. Python's `signal.signal` puts its own C handler back; `ensure`
puts ours back in front of it, and is called when a compiled function is made and on each call
of the general path. Linux only (the layout of `struct sigaction`); elsewhere Ctrl-C waits for
the native call to end."""

from __future__ import annotations

import ctypes
import functools
import signal
import sys
import threading

import llvmlite.binding as llvm

from ..lower import jit
from ..lower.emit import SIGINTS_SYMBOL

SIGINTS = ctypes.c_int64(0)  # SIGINTs received since the handler was first installed
_HANDLER = "diffc_sigint"
_PREVIOUS = "diffc_sigint_previous"
_HANDLER_IR = f"""
@{SIGINTS_SYMBOL} = external global i64
@{_PREVIOUS} = global ptr null

define void @{_HANDLER}(i32 %sig) {{
  %n = atomicrmw add ptr @{SIGINTS_SYMBOL}, i64 1 seq_cst
  %previous = load ptr, ptr @{_PREVIOUS}
  %none = icmp eq ptr %previous, null
  br i1 %none, label %done, label %chain
chain:
  call void %previous(i32 %sig)
  br label %done
done:
  ret void
}}
"""
_SA_SIGINFO = 4
_SIG_IGN = 1


class _Sigaction(ctypes.Structure):
    """glibc's struct sigaction (Linux)."""

    _fields_ = [
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * (128 // ctypes.sizeof(ctypes.c_ulong))),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    ]


_lock = threading.Lock()


def register_symbols():
    """Give MCJIT the address of the count that generated code reads."""
    llvm.add_symbol(SIGINTS_SYMBOL, ctypes.addressof(SIGINTS))


_made: list = []  # [(the handler's machine code, kept alive for the process; its address)]


def _handler() -> tuple[jit.Compiled, int] | None:
    """The handler, compiled once (under the lock: two handlers would both count a SIGINT)."""
    if not sys.platform.startswith("linux"):
        return None
    with _lock:
        if not _made:
            register_symbols()
            compiled = jit.Compiled(jit.optimise(_HANDLER_IR))
            _made.append((compiled, compiled.address(_HANDLER)))
    return _made[0]


@functools.cache
def _sigaction():
    libc = ctypes.CDLL(None, use_errno=True)
    f = libc.sigaction
    f.argtypes = [ctypes.c_int, ctypes.POINTER(_Sigaction), ctypes.POINTER(_Sigaction)]
    f.restype = ctypes.c_int
    return f


def ensure() -> None:
    """Put the handler in front of Python's default SIGINT handler if it is not there (one
    sigaction call when it is)."""
    made = _handler()
    if made is None:
        return
    compiled, address = made
    sigaction, current = _sigaction(), _Sigaction()
    if sigaction(signal.SIGINT, None, ctypes.byref(current)) != 0 or current.handler == address:
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    with _lock:  # (two threads must not both take the other's handler for Python's)
        if sigaction(signal.SIGINT, None, ctypes.byref(current)) != 0:
            return
        if current.handler in (address, None, _SIG_IGN) or current.flags & _SA_SIGINFO:
            return
        ctypes.c_void_p.from_address(compiled.global_address(_PREVIOUS)).value = current.handler
        ours = _Sigaction.from_buffer_copy(current)
        ours.handler = address
        sigaction(signal.SIGINT, ctypes.byref(ours), None)

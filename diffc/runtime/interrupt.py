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


# sigaction(signum, new or None, old or None), called without argument conversion (0.45 us, not
# 1 us: ensure runs on every call of the general path); `_current` is where ensure reads the
# installed handler (what threads reading it at once write there is the same)
_sigaction = ctypes.CDLL(None).sigaction
_current = _Sigaction()
_read_current = ctypes.byref(_current)
_SIGINT = int(signal.SIGINT)


def ensure() -> None:
    """Put the handler in front of Python's default SIGINT handler if it is not there (one
    sigaction call when it is)."""
    made = _made[0] if _made else _handler()
    if made is None:
        return
    compiled, address = made
    if _sigaction(_SIGINT, None, _read_current) != 0 or _current.handler == address:
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    with _lock:  # (two threads must not both take the other's handler for Python's)
        current = _Sigaction()
        if _sigaction(_SIGINT, None, ctypes.byref(current)) != 0:
            return
        if current.handler in (address, None, _SIG_IGN) or current.flags & _SA_SIGINFO:
            return
        ctypes.c_void_p.from_address(compiled.global_address(_PREVIOUS)).value = current.handler
        ours = _Sigaction.from_buffer_copy(current)
        ours.handler = address
        _sigaction(_SIGINT, ctypes.byref(ours), None)

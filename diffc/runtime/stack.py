"""The native stack of the calling thread, so that recursive native code stops with a located
RecursionDepthError before it overflows the stack (SIGSEGV), whatever the stack's size: the
main thread's (RLIMIT_STACK, `ulimit -s`) or a Python thread's (`threading.stack_size`).

Each thread's record, (low, high, limit) as three int64 words, is found once (glibc's
pthread_getattr_np, which reads /proc/self/maps for the main thread) and cached: the runtime
puts `limit` in ctx[CTX_STACK], and recursive native functions fail when their frame is below
it (lower/llvm.py). The direct entry (lower/pyentry.py) reads the record of the last thread
the runtime saw, and uses it when its own frame is inside [low, high)."""

from __future__ import annotations

import ctypes
import threading

# Room left below the limit: a recursive function's own frame, the non-recursive native code
# it calls (kernels, libm, malloc) and Python callbacks such as print's.
MARGIN = 256 << 10

Record = ctypes.c_int64 * 3  # low, high, limit
NO_LIMIT = Record(0, -1, 0)  # unknown bounds (not glibc): any frame, only the call-count guard

_records: dict[tuple[int, int], Record] = {}  # kept alive: the direct entry may point at one
_here = threading.local()


def _bounds() -> tuple[int, int] | None:
    """(low, high) addresses of the calling thread's stack, or None if they cannot be found."""
    try:
        libc = ctypes.CDLL(None)
        getattr_np, getstack = libc.pthread_getattr_np, libc.pthread_attr_getstack
    except (OSError, AttributeError):
        return None
    libc.pthread_self.restype = ctypes.c_void_p
    getattr_np.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    attr = ctypes.create_string_buffer(256)  # a pthread_attr_t (56 bytes with glibc on x86-64)
    if getattr_np(libc.pthread_self(), attr) != 0:
        return None
    low, size = ctypes.c_void_p(), ctypes.c_size_t()
    ok = getstack(attr, ctypes.byref(low), ctypes.byref(size)) == 0
    libc.pthread_attr_destroy(attr)
    if not ok or not low.value or size.value <= MARGIN:
        return None
    return low.value, low.value + size.value


def record() -> Record:
    """The calling thread's stack record (found on its first call in this thread)."""
    rec = getattr(_here, "record", None)
    if rec is None:
        bounds = _bounds()
        if bounds is None:
            rec = NO_LIMIT
        else:
            rec = _records.get(bounds)
            if rec is None:
                rec = _records[bounds] = Record(bounds[0], bounds[1], bounds[0] + MARGIN)
        _here.record = rec
    return rec

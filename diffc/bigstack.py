"""Running the compiler where deep programs fit.

The passes over the AST recurse once per level of nesting, so a 5,000-deep block or a
500-term chain `1.0 + 1.0 + ...` needs more Python frames than the default limit of 1,000,
and raising the limit alone would let C recursion overflow the main thread's 8 MiB stack
(a segfault instead of an error). So the compiler runs on a worker thread with a big stack
and a recursion limit that the stack is sure to hold; the parser bounds the nesting of a
program (syntax/parse.py, MAX_NESTING) so that compiling it stays within that limit."""

from __future__ import annotations

import sys
import threading

from .errors import DiffcSyntaxError

STACK_BYTES = 512 << 20
RECURSION_LIMIT = 200_000  # frames; measured: a Python frame that recurses through C takes ~1.3 KiB

_state = threading.local()  # .deep: this thread is a worker with the big stack
_lock = threading.Lock()
_workers = 0  # workers running; the recursion limit is raised while there is one
_saved_limit = 0


def run(fn, *args):
    """fn(*args) on a thread with a big stack (or here, when already on one or when no such
    thread can be made, say under `ulimit -v`); its result, or its exception re-raised."""
    if getattr(_state, "deep", False):
        return fn(*args)
    box = {}

    def work():
        _state.deep = True
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    _raise_limit()
    try:
        old = threading.stack_size(STACK_BYTES)
        try:
            worker = threading.Thread(target=work, name="diffc-compile", daemon=True)
            worker.start()
        finally:
            threading.stack_size(old)
    except (RuntimeError, MemoryError, ValueError):  # no room for the big stack
        _restore_limit()
        return fn(*args)
    try:
        worker.join()
    finally:
        _restore_limit()
    if "error" in box:
        err = box.pop("error")
        if isinstance(err, RecursionError):  # (MAX_NESTING should make this impossible)
            raise DiffcSyntaxError("the program is nested too deeply for the compiler") from None
        raise err
    return box["value"]


def _raise_limit():
    global _workers, _saved_limit
    with _lock:
        if _workers == 0:
            _saved_limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(_saved_limit, RECURSION_LIMIT))
        _workers += 1


def _restore_limit():
    global _workers
    with _lock:
        _workers -= 1
        if _workers == 0:
            sys.setrecursionlimit(_saved_limit)

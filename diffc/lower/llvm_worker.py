"""A child process that turns LLVM IR text into object code, so that what llvmlite leaks per
compiled module is returned to the OS when the child is replaced (See Note [The LLVM worker]).

The parent side is `compile`; the child runs `serve` with the compile function of lower/jit.py.
Messages on the child's stdin and stdout are length-prefixed: a request is the IR text, a reply
is a kind byte (object code, out of memory, an error's text) and its payload."""

from __future__ import annotations

import atexit
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading

from ..errors import InternalError, UsageError

DEFAULT_MODULES_PER_WORKER = 256
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # diffc/
_REQUEST = struct.Struct("<Q")
_REPLY = struct.Struct("<cQ")
_OBJECT, _OUT_OF_MEMORY, _ERROR = b"O", b"M", b"E"
_READY = b"R"  # the child's first byte: it has started and takes modules
# what a child killed by an allocation failure left on its stderr: LLVM's bad_alloc handler,
# an uncaught std::bad_alloc, or Python's MemoryError while it started
_OOM_SIGNS = (b"out of memory", b"bad_alloc", b"MemoryError", b"Cannot allocate memory")


def modules_per_worker() -> int:
    """How many modules one child compiles before it is replaced (DIFFC_LLVM_WORKER_MODULES)."""
    text = os.environ.get("DIFFC_LLVM_WORKER_MODULES", "")
    if not text:
        return DEFAULT_MODULES_PER_WORKER
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"DIFFC_LLVM_WORKER_MODULES must be a whole number of at least 1, got {text!r}")
    return int(text)


class _Died(Exception):
    """The child ended before it answered."""

    def __init__(self, status: int, stderr: bytes):
        super().__init__(status, stderr)
        self.status, self.stderr = status, stderr

    @property
    def out_of_memory(self) -> bool:
        return any(sign in self.stderr for sign in _OOM_SIGNS)

    def describe(self) -> str:
        how = f"was killed by signal {-self.status}" if self.status < 0 else f"exited with status {self.status}"
        last = self.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return f"the LLVM worker process {how}" + (f" ({last[0]})" if last else "")


class _Worker:
    """One child process, with its stderr in a file (read when it dies; a pipe could fill and
    block it). It has a session of its own, so Ctrl-C at the terminal never reaches it."""

    def __init__(self, env: dict[str, str]):
        self.compiled = 0
        self.ready = False
        self.stderr = tempfile.TemporaryFile()
        # The parent's sys.path, given in full: no site or PYTHON* variable adds to it (-I -S).
        # The package `diffc` is made empty, so that the child imports lower/jit.py and what it
        # imports, not the whole compiler (diffc/__init__.py): once it has compiled, 92 MB
        # resident instead of 113, and 180 MB of address space (what `ulimit -v` counts) not 315.
        path = [os.fsdecode(p) for p in sys.path if isinstance(p, (str, bytes, os.PathLike))]
        code = (
            f"import sys, types; sys.path[:] = {path!r}; "
            f"sys.modules['diffc'] = types.ModuleType('diffc'); sys.modules['diffc'].__path__ = [{_PACKAGE!r}]; "
            "from diffc.lower import jit; jit.serve_worker()"
        )
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            self.stderr.close()
            raise

    def wait_ready(self) -> None:
        """Wait until the child has started (imported LLVM), or _Died."""
        if not self.ready:
            if self.proc.stdout.read(len(_READY)) != _READY:
                raise self._death()
            self.ready = True

    def ask(self, text: bytes) -> tuple[bytes, bytes]:
        """Send one module, wait for its reply: (kind, payload), or _Died."""
        self.wait_ready()
        try:
            self.proc.stdin.write(_REQUEST.pack(len(text)) + text)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # (it died: the reply below is cut short)
        head = self.proc.stdout.read(_REPLY.size)
        if len(head) == _REPLY.size:
            kind, size = _REPLY.unpack(head)
            payload = self.proc.stdout.read(size)
            if len(payload) == size:
                self.compiled += 1
                return kind, payload
        raise self._death()

    def _death(self) -> _Died:
        """What ended the child, whose stdout has ended."""
        try:
            self.proc.wait(timeout=10)  # (its stdout ends a moment before it does)
        except subprocess.TimeoutExpired:
            pass
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - 4096))
        tail = self.stderr.read()
        self.close()
        return _Died(self.proc.returncode, tail)

    def close(self) -> None:
        """End the child and reap it (no zombie): it holds no state worth a graceful exit."""
        self.forget()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def forget(self) -> None:
        """Close this process's ends of the pipes (in a fork of the parent, only those)."""
        for stream in (self.proc.stdin, self.proc.stdout, self.stderr):
            try:
                stream.close()
            except OSError:
                pass


_lock = threading.Lock()  # one compile at a time talks to the child
_worker: _Worker | None = None
_exiting = False


class CannotStart(Exception):
    """No child process can be started here (say, under `ulimit -u`)."""


def compile(text: str, env: dict[str, str], claim=None) -> bytes | None:
    """Object code for LLVM IR text, made by the child (started with `env`). A child that dies is
    replaced, and the module tried once more in the new one; out of memory is a MemoryError
    and a second death an InternalError. Interrupted (Ctrl-C), the child is killed. With
    `claim`, the module is sent only if claim() says yes once the child has started: else
    None (See Note [Units] in lower/llvm.py: the caller may have compiled it meanwhile)."""
    data = text.encode()
    with _lock:
        for _ in range(2):
            try:
                got = _ask(data, env, claim)
                if got is None:
                    return None
                kind, payload = got
                break
            except _Died as died:
                if died.out_of_memory:
                    raise MemoryError(died.describe()) from None
                death = died.describe()
        else:
            raise InternalError(f"{death} twice while compiling a module")
    if kind == _OBJECT:
        return payload
    if kind == _OUT_OF_MEMORY:
        raise MemoryError("out of memory in the LLVM worker process")
    raise RuntimeError(payload.decode(errors="replace"))  # as the same error raised here would be


def start(env: dict[str, str]) -> None:
    """Start the child now (with `env`), if there is none and no compile is talking to one, so
    that it is ready when a module's second unit comes (See Note [Units] in lower/llvm.py)."""
    global _worker
    if not _lock.acquire(blocking=False):
        return
    try:
        if _worker is None and not _exiting:
            _worker = _Worker(env)
    except OSError:
        pass  # (compile says CannotStart when it is needed)
    finally:
        _lock.release()


def _ask(data: bytes, env: dict[str, str], claim=None) -> tuple[bytes, bytes] | None:
    """One exchange with the child, started first if need be (under _lock); None if `claim`
    says no once the child has started."""
    global _worker
    if _worker is None:
        if _exiting:
            raise InternalError("the process is exiting")
        try:
            _worker = _Worker(env)
        except OSError as e:
            raise CannotStart(e) from None
    try:
        _worker.wait_ready()
        if claim is not None and not claim():
            return None
        kind, payload = _worker.ask(data)
    except _Died:
        _worker = None
        raise
    except BaseException:  # mid-answer: its reply would be taken for the next module's
        _worker.close()
        _worker = None
        raise
    if _worker.compiled >= modules_per_worker() or kind == _OUT_OF_MEMORY:
        _worker.close()  # (one that ran out of memory may be left in a poor state)
        _worker = None
    return kind, payload


@atexit.register
def _end_at_exit() -> None:
    """Kill and reap the child. Only that: a compile thread that outlived a Ctrl-C may still be
    reading its stdout (closing the pipe would wait for that read), and it must not start
    another child when this one's reply is cut short."""
    global _exiting
    _exiting = True
    if _worker is not None:
        _worker.proc.kill()
        _worker.proc.wait()


def _after_fork() -> None:
    """A forked process starts its own child when it compiles: the parent's is not its to use."""
    global _worker, _lock
    _lock = threading.Lock()
    if _worker is not None:
        _worker.forget()
        _worker = None


os.register_at_fork(after_in_child=_after_fork)


def serve(compile_here) -> None:
    """The child's loop: a module in, compile_here(text) -> bytes out, until stdin ends (the
    parent exited or closed it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever else writes to stdout goes to stderr, never into a reply
    try:
        replies.write(_READY)
        replies.flush()
    except BrokenPipeError:
        return
    while True:
        head = requests.read(_REQUEST.size)
        if len(head) < _REQUEST.size:
            return
        (size,) = _REQUEST.unpack(head)
        text = requests.read(size)
        if len(text) < size:
            return
        try:
            kind, payload = _OBJECT, compile_here(text.decode())
        except MemoryError:
            kind, payload = _OUT_OF_MEMORY, b""
        except Exception as e:
            kind, payload = _ERROR, str(e).encode()
        try:
            replies.write(_REPLY.pack(kind, len(payload)) + payload)
            replies.flush()
        except BrokenPipeError:
            return


# Note [The LLVM worker]
# ~~~~~~~~~~~~~~~~~~~~~~
# llvmlite 0.50 leaks 75 to 95 KB per optimised module, and offers no call that frees it: its
# LLVMPY_CreatePassBuilder makes a PassInstrumentationCallbacks that nothing deletes, and each
# pass-manager run registers more callbacks in it (which dangle after the run, so a PassBuilder
# cannot be reused either). Only LLVMPY_* functions are exported, so no other way to run the
# pipeline is reachable from Python. A process that compiles for hours (a new signature per
# batch shape) would grow without bound; so after the first modules (lower/jit.py, object_code)
# a child process optimises and code-generates each module, and is replaced after
# DIFFC_LLVM_WORKER_MODULES modules, which gives its leak back to the OS. It is the same Python
# with the same sys.path, target machine, CPU features and options (jit.OPT_LEVEL is passed in
# DIFFC_OPT), so its object code is the bytes this process would make.
#
# A child that dies (killed, an LLVM abort) is replaced and the module tried once more in the
# new child, never here: what aborted the child would abort the user's process. A child that
# ran out of memory (under `ulimit -v` LLVM's allocations abort it) makes the compile a
# MemoryError, which the API reports as a located DiffcMemoryError. Ctrl-C in the parent
# while a compile waits kills the child (its reply would otherwise answer the next request);
# the compile thread of bigstack.run usually outlives the interrupt and just finishes its
# exchange. Compiles from several threads take turns on the one child (the lock). The child
# ends when its stdin does: at the parent's exit, even a SIGKILL, and replaced children are
# killed and reaped at once.

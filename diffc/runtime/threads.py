"""The threads that run parallel loops (See Note [Parallel loops] in lower/emit.py): a pool of
workers in native code, emitted in LLVM IR, behind `diffc_parallel_for(fn, env, n, per_thread)`,
which runs fn(env, lo, hi) over pieces of 0..n, per_thread pieces per thread, on the calling
thread and the workers.

The workers are Python daemon threads, each inside one long native call (ctypes releases the
GIL for it): Python starts them, so a thread that cannot be started (under `ulimit -v`, say)
only means fewer workers. How many run is DIFFC_THREADS (all the cores this process may use by
default) or `set_threads`; it changes no result, since a parallel loop's iterations are
independent and each writes its own elements."""

from __future__ import annotations

import ctypes
import os
import platform
import threading

import llvmlite.binding as llvm

from ..errors import UsageError
from ..lower import jit
from ..lower.emit import PARALLEL_SYMBOL, X86

# Polls of a worker for a new job (about 0.5-1 ms) before it sleeps in the kernel. Waking a
# sleeper takes a system call, and in a virtual machine an interrupt between cores: with 2000
# polls (50-100 us) the worker slept through every serial stretch between two parallel loops
# (an RNN's step, about 100 us), and rnn T200 b64 h256 f64 took 92 ms at two threads and 101
# at one; with 20000, 75 ms. (GNU OpenMP spins about as long by default, Intel's 200 ms.)
SPIN = 20000
_PAUSE = "call void @llvm.x86.sse2.pause()" if X86 else ""
_DECLARE_X86 = "\n".join(
    f"declare void @llvm.x86.{name}" for name in ("sse2.pause()", "sse.stmxcsr(ptr)", "sse.ldmxcsr(ptr)") if X86
)
# a job runs in its caller's float mode (MXCSR: See Note [Subnormal floats] in lower/emit.py)
_KEEP_MODE = "call void @llvm.x86.sse.stmxcsr(ptr @pool.mxcsr)" if X86 else ""
_TAKE_MODE = (
    "call void @llvm.x86.sse.stmxcsr(ptr %own)\n  call void @llvm.x86.sse.ldmxcsr(ptr @pool.mxcsr)" if X86 else ""
)
_OWN_MODE = "call void @llvm.x86.sse.ldmxcsr(ptr %own)" if X86 else ""
# futex(2) on the 32-bit words `gen` (workers wait for a new job) and `done` (the caller waits
# for the workers), private to this process
_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine())
_WAIT, _WAKE = 128, 129
_CLOSED = 1 << 62  # in pool.state, above the count of workers inside the job: no one joins now

_POOL_IR = f"""
@pool.lock = global i64 0
@pool.fn = global ptr null
@pool.env = global ptr null
@pool.n = global i64 0
@pool.piece = global i64 1
@pool.next = global i64 0
@pool.state = global i64 0
@pool.gen = global i32 0
@pool.done = global i32 0
@pool.mxcsr = global i32 0
@diffc_pool_workers = global i64 0

declare i64 @syscall(i64, ...)
{_DECLARE_X86}

; fn(env, lo, hi) for the pieces of the current job that no other thread took
define private void @run_pieces() {{
entry:
  %fn = load ptr, ptr @pool.fn
  %env = load ptr, ptr @pool.env
  %n = load i64, ptr @pool.n
  %piece = load i64, ptr @pool.piece
  br label %take
take:
  %k = atomicrmw add ptr @pool.next, i64 1 monotonic
  %lo = mul i64 %k, %piece
  %more = icmp slt i64 %lo, %n
  br i1 %more, label %run, label %done
run:
  %end = add i64 %lo, %piece
  %over = icmp sgt i64 %end, %n
  %hi = select i1 %over, i64 %n, i64 %end
  call void %fn(ptr %env, i64 %lo, i64 %hi)
  br label %take
done:
  ret void
}}

; Wait until the 32-bit word at %p is no longer %old: spin a while, then sleep in the kernel.
; Returns the new value.
define private i32 @wait_change(ptr %p, i32 %old) {{
entry:
  br label %spin
spin:
  %i = phi i32 [0, %entry], [%i1, %again], [0, %slept]
  %v = load atomic i32, ptr %p acquire, align 4
  %changed = icmp ne i32 %v, %old
  br i1 %changed, label %out, label %idle
idle:
  %i1 = add i32 %i, 1
  %long = icmp sgt i32 %i1, {SPIN}
  br i1 %long, label %sleep, label %again
again:
  {_PAUSE}
  br label %spin
sleep:
  %old64 = zext i32 %old to i64
  %r = call i64 (i64, ...) @syscall(i64 {_FUTEX}, ptr %p, i64 {_WAIT}, i64 %old64, ptr null)
  br label %slept
slept:
  br label %spin
out:
  ret i32 %v
}}

define private void @wake(ptr %p, i64 %count) {{
  %r = call i64 (i64, ...) @syscall(i64 {_FUTEX}, ptr %p, i64 {_WAKE}, i64 %count)
  ret void
}}

; Worker number %id (from 1), started when the pool's job count was %start. It joins each new
; job while it is one of the workers in use, unless the job is closed already (its caller ran
; out of pieces before the worker woke: the caller waits only for the workers that joined).
define void @diffc_pool_worker(i64 %id, i64 %start) {{
entry:
  %own = alloca i32
  %first = trunc i64 %start to i32
  br label %wait
wait:
  %seen = phi i32 [%first, %entry], [%gen, %skip], [%gen, %join], [%gen, %work], [%gen, %wake_caller]
  %gen = call i32 @wait_change(ptr @pool.gen, i32 %seen)
  %used = load atomic i64, ptr @diffc_pool_workers monotonic, align 8
  %mine = icmp sle i64 %id, %used
  br i1 %mine, label %join, label %skip
skip:
  br label %wait
join:
  %s = load atomic i64, ptr @pool.state acquire, align 8
  %bits = and i64 %s, {_CLOSED}
  %closed = icmp ne i64 %bits, 0
  br i1 %closed, label %wait, label %enter
enter:
  %s1 = add i64 %s, 1
  %x = cmpxchg ptr @pool.state, i64 %s, i64 %s1 acq_rel acquire
  %in = extractvalue {{ i64, i1 }} %x, 1
  br i1 %in, label %work, label %join
work:
  {_TAKE_MODE}
  call void @run_pieces()
  {_OWN_MODE}
  %old = atomicrmw sub ptr @pool.state, i64 1 acq_rel
  %last = icmp eq i64 %old, {_CLOSED + 1}
  br i1 %last, label %wake_caller, label %wait
wake_caller:
  store atomic i32 1, ptr @pool.done release, align 4
  call void @wake(ptr @pool.done, i64 1)
  br label %wait
}}

define void @{PARALLEL_SYMBOL}(ptr %fn, ptr %env, i64 %n, i64 %per_thread) {{
entry:
  %workers = load atomic i64, ptr @diffc_pool_workers monotonic, align 8
  %none = icmp eq i64 %workers, 0
  %small = icmp slt i64 %n, 2
  %alone = or i1 %none, %small
  br i1 %alone, label %serial, label %try
try:
  %got = cmpxchg ptr @pool.lock, i64 0, i64 1 acquire monotonic
  %free = extractvalue {{ i64, i1 }} %got, 1
  br i1 %free, label %share, label %serial
serial:
  call void %fn(ptr %env, i64 0, i64 %n)
  ret void
share:
  store ptr %fn, ptr @pool.fn
  store ptr %env, ptr @pool.env
  store i64 %n, ptr @pool.n
  %threads = add i64 %workers, 1
  %count = mul i64 %threads, %per_thread
  %sum = add i64 %n, %count
  %sum1 = sub i64 %sum, 1
  %piece = sdiv i64 %sum1, %count
  store i64 %piece, ptr @pool.piece
  store i64 0, ptr @pool.next
  {_KEEP_MODE}
  store atomic i32 0, ptr @pool.done monotonic, align 4
  store atomic i64 0, ptr @pool.state release, align 8
  %g = atomicrmw add ptr @pool.gen, i32 1 release
  call void @wake(ptr @pool.gen, i64 2147483647)
  call void @run_pieces()
  %s = atomicrmw or ptr @pool.state, i64 {_CLOSED} acq_rel
  %inside = icmp ne i64 %s, 0
  br i1 %inside, label %wait, label %finish
wait:
  %v = call i32 @wait_change(ptr @pool.done, i32 0)
  br label %finish
finish:
  store atomic i64 0, ptr @pool.lock release, align 8
  ret void
}}
"""

_WORKER = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64)
_lock = threading.Lock()
_pool: dict = {}  # "compiled", "worker" (its ctypes function), "used" (the ctypes int), "started"


def default_threads() -> int:
    """DIFFC_THREADS, else the cores this process may run on."""
    text = os.environ.get("DIFFC_THREADS", "")
    if text:
        if not text.isdigit() or int(text) < 1:
            raise UsageError(f"DIFFC_THREADS must be a whole number of at least 1, got {text!r}")
        return int(text)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # (not Linux)
        return os.cpu_count() or 1


def register_symbols() -> None:
    """Give MCJIT `diffc_parallel_for`; the first time, start the workers DIFFC_THREADS asks for."""
    with _lock:
        made = bool(_pool)
        if not made:
            compiled = jit.Compiled(jit.optimise(_POOL_IR))
            _pool["compiled"] = compiled
            _pool["worker"] = _WORKER(compiled.address("diffc_pool_worker"))
            _pool["used"] = ctypes.c_int64.from_address(compiled.global_address("diffc_pool_workers"))
            _pool["gen"] = ctypes.c_int32.from_address(compiled.global_address("pool.gen"))
            _pool["lock"] = ctypes.c_int64.from_address(compiled.global_address("pool.lock"))
            _pool["started"] = 0
            os.register_at_fork(after_in_child=_after_fork)
            llvm.add_symbol(PARALLEL_SYMBOL, compiled.address(PARALLEL_SYMBOL))
    if not made:
        set_threads(default_threads())


def set_threads(n: int) -> int:
    """Run parallel loops on n threads, the caller's included;
    returns how many will run (fewer when the system would not start more)."""
    if n < 1:
        raise UsageError(f"the number of threads must be at least 1, got {n}")
    if _FUTEX is None:
        n = 1
    register_symbols()
    with _lock:
        while _pool["started"] < n - 1:
            k = _pool["started"] + 1
            t = threading.Thread(target=_pool["worker"], args=(k, _pool["gen"].value), name=f"diffc-{k}", daemon=True)
            try:
                t.start()
            except RuntimeError:  # (can't start new thread)
                break
            _pool["started"] = k
        used = min(n - 1, _pool["started"])
        _pool["used"].value = used
    return used + 1


def threads() -> int:
    """How many threads parallel loops run on now."""
    return _pool["used"].value + 1 if _pool else default_threads()


def _after_fork() -> None:
    """A forked child has only the thread that forked: no workers, and no job under way."""
    _pool["used"].value = 0
    _pool["lock"].value = 0
    _pool["started"] = 0

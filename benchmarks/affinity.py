"""One thread means one core: `--threads 1` pins the whole process to one core with
os.sched_setaffinity before any library starts a thread (with only the thread variables set,
JAX still ran its matrix products on 2 cores and handed each call to a worker thread on the
other core). Every timed call is then checked: the process's CPU time must equal its wall time;
more CPU than wall means a second core worked, less means the call waited (another process had
the core, or a thread handoff)."""

from __future__ import annotations

import os
import time

TOLERANCE = 0.1  # |cpu / wall - 1| above this is reported


def pin_to_one_core() -> int:
    """Pins this process (and the threads it starts later) to the first core it may run on."""
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def cores() -> int:
    return len(os.sched_getaffinity(0))


def cpu_and_wall(fn, min_time: float = 0.02) -> tuple[float, float]:
    """The process CPU time (every thread's) and the wall time of calls of fn, as many as fill
    min_time (short calls alone are below the CPU clock's resolution)."""
    cpu, wall = time.process_time(), time.perf_counter()
    while True:
        fn()
        if time.perf_counter() - wall >= min_time:
            break
    return time.process_time() - cpu, time.perf_counter() - wall


def warning(cpu: float, wall: float, threads: int) -> str:
    """'' when one thread's CPU time matches its wall time (or when several threads may run),
    else what went wrong, for the table's warning column."""
    if threads != 1 or wall <= 0.0:
        return ""
    ratio = cpu / wall
    if ratio > 1.0 + TOLERANCE:
        return f"{ratio:.2f} (more than one core)"
    if ratio < 1.0 - TOLERANCE:
        return f"{ratio:.2f} (waited)"
    return ""

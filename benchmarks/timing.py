"""Timing one callable: warm-up, then adaptive repeats (until min_time has passed and at least
min_count calls were made, or max_time has passed after 3 calls), each call timed alone.

The garbage collector stays on, as in a user's program, unlike timeit: results that only the
cyclic collector frees would otherwise pile up for the whole measurement, and every call would
pay for fresh pages (diffc's value_and_grad results, at 67f03a5: softmax_xent's gradient takes
7 ms with the collector on and 40 ms with it off). A collection before each measurement keeps
the previous one's garbage out of it."""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    min_time: float = 0.2  # seconds of timed calls
    min_count: int = 10
    max_time: float = 3.0  # a cap for slow calls
    warmup_time: float = 0.05


FULL = Budget()
QUICK = Budget(min_time=0.05, min_count=3, max_time=0.3, warmup_time=0.01)


def measure(fn, budget: Budget = FULL, clock=time.perf_counter) -> dict:
    """{"median_us", "min_us", "repeats"} of fn(), timed by clock (in seconds): wall time, or
    time.thread_time for the CPU time of a single-threaded call, which a loaded machine does
    not stretch by handing the core to another process in the middle of a call."""
    start = time.perf_counter()
    while True:  # warm-up: at least one call
        fn()
        if time.perf_counter() - start >= budget.warmup_time:
            break
    times, total = [], 0.0
    gc.collect()
    while not _enough(len(times), total, budget):
        t = clock()
        fn()
        times.append(clock() - t)
        total += times[-1]
    return {"median_us": statistics.median(times) * 1e6, "min_us": min(times) * 1e6, "repeats": len(times)}


def _enough(count: int, total: float, budget: Budget) -> bool:
    if count < 3:
        return False
    return total >= budget.max_time or (count >= budget.min_count and total >= budget.min_time)

"""What only a fresh process can measure, for one implementation and one workload:

- the first calls in a new process (warm start): a compiler with a disk cache (diffc's,
  torch.compile's inductor's, both pointed at the run's own directory by environment.py) is
  faster here than in the runner's process;
- peak memory, two ways:
  - process: the peak resident memory of the whole process (the library's import, the data,
    compiling, the calls), the kernel's high-water mark VmHWM. Not ru_maxrss: Linux carries
    that over fork and exec, so a child of the runner would report the runner's own peak;
  - call: the resident memory that one value-and-grad call adds at its peak, after warm-up:
    the kernel's high-water mark (VmHWM) is reset through /proc/self/clear_refs, the call runs,
    and the mark minus the RSS before the call is the call's peak. The probe runs with glibc's
    mmap threshold pinned at 64 KiB, so that freed buffers leave the RSS instead of being kept
    and reused from the heap, which would hide a call's allocations.

Run as `python -m benchmarks.probe IMPL WORKLOAD`: prints one JSON object (the last line)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "131072"}
MIB = 1024 * 1024


def run(impl: str, workload: str, timeout: float = 600.0) -> dict:
    """Run the probe in a new process; {"error": ...} if it failed."""
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.probe", impl, workload],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"the probe took more than {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"the probe exited with {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            return int(re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M).group(1))
    except (OSError, AttributeError):
        return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def call_peak_mib(fn, calls: int = 3) -> float | None:
    """The most resident memory that any of `calls` calls of fn added, or None on a kernel
    without a resettable high-water mark."""
    peaks = []
    for _ in range(calls):
        before = _status_kib("VmRSS")
        if before is None or not _reset_peak():
            return None
        fn()
        peaks.append(max(_status_kib("VmHWM") - before, 0))
    return max(peaks) * 1024 / MIB


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def probe(impl: str, workload: str) -> dict:
    from benchmarks import environment, impls
    from benchmarks.data import data

    environment.pin_libraries(int(os.environ.get("OMP_NUM_THREADS", "1")))
    impls.available(impl)  # the one-time initialisation, as in the runner's process
    params, inputs = data(workload)
    fwd, vg = impls.make(impl, workload, params, inputs)
    fwd_first, vg_first = timed(fwd), timed(vg)
    fwd_warm = min(timed(fwd) for _ in range(3))
    vg_warm = min(timed(vg) for _ in range(3))
    process_peak_kib = _status_kib("VmHWM") or 0  # before call_peak_mib resets it
    vg_peak = call_peak_mib(vg)
    return {
        "first_call_s": {"fwd": fwd_first, "vg": vg_first},
        "warm_call_s": {"fwd": fwd_warm, "vg": vg_warm},
        "process_peak_mib": max(process_peak_kib, _status_kib("VmHWM") or 0) * 1024 / MIB,
        "vg_call_peak_mib": vg_peak,
    }


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2])))

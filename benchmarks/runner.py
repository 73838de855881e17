"""python -m benchmarks: check every implementation against NumPy, time them, print the tables.

1. check: each implementation's fwd and value-and-grad against the NumPy peer (check.py); its
   first calls, timed here, give the cold compile time;
2. time: fwd and value-and-grad of each, in this process, with warm-up and adaptive repeats
   (timing.py);
3. probe: a new process per implementation and workload, for the warm-start compile time and
   peak memory (probe.py);
4. report: Markdown tables on stdout, JSON in benchmarks/results/ (report.py).

The environment (threads, caches) is set by __main__ before NumPy is imported (environment.py)."""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

from benchmarks import check, environment, impls, probe, report, timing
from benchmarks.data import NAMES, data

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter timing, for a run in under 3 minutes")
    p.add_argument(
        "--only",
        type=_names(NAMES),
        default=NAMES,
        metavar="NAME[,NAME]",
        help=f"these workloads, of {', '.join(NAMES)}",
    )
    p.add_argument(
        "--impl",
        type=_names(list(impls.IMPLS)),
        default=list(impls.IMPLS),
        metavar="IMPL[,IMPL]",
        help=f"these implementations, of {', '.join(impls.IMPLS)}",
    )
    p.add_argument("--threads", type=int, default=1, help="threads for every library (default 1)")
    p.add_argument("--check-only", action="store_true", help="check against NumPy, time nothing, save nothing")
    p.add_argument("--no-probe", action="store_true", help="skip the new-process compile time and memory")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where the JSON goes (default {RESULTS})")
    return p.parse_args(argv)


def _names(allowed):
    def parse(text):
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
        return names

    return parse


class Progress:
    """One line on stderr saying what is running, rewritten in place on a terminal."""

    def __init__(self, total: int):
        self.total, self.done, self.tty = total, 0, sys.stderr.isatty()

    def step(self, what: str):
        self.done += 1
        line = f"[{self.done}/{self.total}] {what}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self):
        if self.tty:
            sys.stderr.write("\r\033[K")


def loud(message: str):
    print(f"\n!!! {message}", file=sys.stderr, flush=True)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("diffc", "llvmlite", "numpy", "jax", "jaxlib", "torch"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def diffc_source() -> str:
    """Where diffc is imported from: its git commit, and whether it had uncommitted changes."""
    spec = importlib.util.find_spec("diffc")
    if spec is None or spec.origin is None:
        return "not installed"
    where = Path(spec.origin).resolve().parent
    git = ["git", "-C", str(where)]
    try:
        commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(git + ["status", "--porcelain", "."], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "not in a git checkout"
    root = Path(__file__).resolve().parent.parent
    place = "this checkout" if where.parent == root else "another checkout"  # (no machine's paths in results)
    return commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "") + f" ({place})"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def timed_call(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def check_all(args, available, progress) -> tuple[dict, dict]:
    """Phase 1: make every implementation of every workload, call it once (cold), compare it
    with NumPy. Returns the results per workload and the callables for the timing."""
    results, callables = {}, {}
    for name in args.only:
        params, inputs = data(name)
        reference = impls.make(impls.REFERENCE, name, params, inputs)[1]()
        results[name] = {}
        for impl in args.impl:
            entry = results[name][impl] = {}
            if impl not in available:
                entry["status"] = "skipped"
                continue
            progress.step(f"check {impl} {name}")
            try:
                made = impls.make(impl, name, params, inputs)
                if made is None:
                    entry["status"] = "n/a"
                    continue
                fwd, vg = made
                fwd_value, fwd_first = timed_call(fwd)
                vg_value, vg_first = timed_call(vg)
            except Exception as e:
                entry.update(status="error", detail=f"{type(e).__name__}: {e}")
                loud(f"ERROR {impl} {name}: {entry['detail']}\n{traceback.format_exc()}")
                continue
            entry["first_call_s"] = {"fwd": fwd_first, "vg": vg_first}
            entry["check"] = check.compare(fwd_value, vg_value, reference)
            entry["status"] = "ok" if entry["check"]["ok"] else "mismatch"
            if not entry["check"]["ok"]:
                loud(f"MISMATCH {impl} {name}: relative error {entry['check']['worst']:.3g} > {check.TOLERANCE:g}")
            callables[name, impl] = (fwd, vg)
            if impl == "diffc":
                from benchmarks import diffc_impl

                entry["tape_mib"] = diffc_impl.tape_mib(name, params, inputs)
    return results, callables


def time_all(results, callables, budget, progress):
    """Phase 2: fwd and value-and-grad of each implementation; the cold compile time is the
    first call (phase 1) minus the median."""
    for (name, impl), (fwd, vg) in callables.items():
        entry = results[name][impl]
        for phase, fn in (("fwd", fwd), ("vg", vg)):
            progress.step(f"time {impl} {name} {phase}")
            try:
                entry[phase] = timing.measure(fn, budget)
            except Exception as e:
                entry.update(status="error", detail=f"{type(e).__name__}: {e}")
                loud(f"ERROR {impl} {name} {phase}: {entry['detail']}")
                break
        if impl in impls.COMPILED and entry.get("vg"):
            first = entry["first_call_s"]
            entry["compile_ms"] = {
                f"{phase}_cold": (first[phase] * 1e6 - entry[phase]["median_us"]) / 1e3 for phase in ("fwd", "vg")
            }


def probe_all(results, progress, jobs: int = 1):
    """Phase 3: a new process per implementation and workload, `jobs` of them at once (the
    processes are measured apart: their memory is their own, and a warm start is a few ms)."""
    todo = [
        (name, impl, entry)
        for name, row in results.items()
        for impl, entry in row.items()
        if entry.get("status") in ("ok", "mismatch")
    ]

    def one(job):
        name, impl, entry = job
        return job, probe.run(impl, name)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        for (name, impl, entry), found in pool.map(one, todo):
            progress.step(f"probe {impl} {name} (new process)")
            if "error" in found:
                entry["probe_error"] = found["error"]
                loud(f"probe {impl} {name}: {found['error']}")
                continue
            entry["memory"] = {k: found[k] for k in ("process_peak_mib", "vg_call_peak_mib")}
            if impl in impls.COMPILED and "compile_ms" in entry:
                for phase in ("fwd", "vg"):
                    warm = (found["first_call_s"][phase] - found["warm_call_s"][phase]) * 1e3
                    entry["compile_ms"][f"{phase}_warm"] = warm


def main(argv=None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now().isoformat(timespec="seconds")
    if os.environ.get("DIFFC_VERIFY"):
        loud("DIFFC_VERIFY is set: diffc's compile times include verifying the IR after every pass")
    available, unavailable = [], {}
    for impl in args.impl:
        print(f"loading {impl}", file=sys.stderr, flush=True)
        ok, reason = impls.available(impl)
        if ok:
            available.append(impl)
        else:
            unavailable[impl] = reason
            print(f"skipping {impl}: {reason}", file=sys.stderr)
    environment.pin_libraries(args.threads)

    steps = len(args.only) * len(available) * (1 if args.check_only else 3 + (not args.no_probe))
    progress = Progress(steps)
    workloads, callables = check_all(args, available, progress)
    if not args.check_only:
        time_all(workloads, callables, timing.QUICK if args.quick else timing.FULL, progress)
        if not args.no_probe:
            probe_all(workloads, progress, jobs=2 if args.quick else 1)
    progress.close()

    results = {
        "meta": {
            "started": started,
            "machine": machine(),
            "threads": args.threads,
            "quick": args.quick,
            "implementations": args.impl,
            "unavailable": unavailable,
            "versions": versions(),
            "diffc_source": diffc_source(),
            "tolerance": check.TOLERANCE,
            "diffc_verify": bool(os.environ.get("DIFFC_VERIFY")),
        },
        "workloads": workloads,
    }
    bad = [
        (n, i, e["status"])
        for n, row in workloads.items()
        for i, e in row.items()
        if e["status"] in ("error", "mismatch")
    ]
    if args.check_only:
        print(check_summary(workloads))
    else:
        print(report.render(results))
        paths = report.save(results, args.out)
        print(f"\nsaved {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if bad:
        loud("FAILED: " + ", ".join(f"{impl} {name} ({status})" for name, impl, status in bad))
        return 1
    return 0


def check_summary(workloads: dict) -> str:
    rows = []
    for name, row in workloads.items():
        for impl, entry in row.items():
            worst = entry.get("check", {}).get("worst")
            rows.append([name, impl, entry["status"], "—" if worst is None else f"{worst:.1e}"])
    return report.table(["workload", "implementation", "status", "worst relative error"], rows)

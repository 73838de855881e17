"""A 10-million-step scalar `iterate` compiled by diffc, against the same loop in plain Python.

Run: python benchmarks/scalar_loop.py
This is a benchmark, not a test: it prints times and their ratio and asserts nothing about
speed (the machines it runs on are shared and noisy)."""

from __future__ import annotations

import math
import time

import diffc

STEPS = 10_000_000

SOURCE = f"""
# the logistic map: a dependent chain of multiplications, no closed form for LLVM to find
fn logistic(x0, r) = iterate(fn(x) => r * x * (1.0 - x), x0, {STEPS})
# the same with a transcendental call per step
fn with_sin(x0, r) = iterate(fn(x) => r * x * (1.0 - x) + 0.001 * sin(x), x0, {STEPS})
"""


def logistic(x0: float, r: float) -> float:
    x = x0
    for _ in range(STEPS):
        x = r * x * (1.0 - x)
    return x


def with_sin(x0: float, r: float) -> float:
    x = x0
    for _ in range(STEPS):
        x = r * x * (1.0 - x) + 0.001 * math.sin(x)
    return x


def best_of(fn, repeats):
    times, value = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return min(times), value


def main():
    m = diffc.compile(SOURCE)
    for name, python_fn in (("logistic", logistic), ("with_sin", with_sin)):
        fn = m.function(name)
        t0 = time.perf_counter()
        fn(0.3, 3.7)  # compiles
        compile_s = time.perf_counter() - t0
        native_s, native_v = best_of(lambda: fn(0.3, 3.7), 5)
        python_s, python_v = best_of(lambda: python_fn(0.3, 3.7), 1)
        print(f"{name}: {STEPS:,} steps of a scalar iterate")
        print(
            f"  diffc (native)   {native_s * 1e3:9.1f} ms   ({native_s / STEPS * 1e9:.2f} ns/step; "
            f"first call incl. compile {compile_s * 1e3:.0f} ms)"
        )
        print(f"  plain Python     {python_s * 1e3:9.1f} ms   ({python_s / STEPS * 1e9:.2f} ns/step)")
        print(f"  speed-up         {python_s / native_s:9.1f}x")
        print(f"  results agree:   {math.isclose(native_v, python_v, rel_tol=1e-9)}")


if __name__ == "__main__":
    main()

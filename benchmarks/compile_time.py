"""Cold compile time of value_and_grad for an MLP written out with L layers, L = 2 .. 64: how
the compile grows with the program (issue 12). Each layer is `tanh(h @ w + b)` with 16 x 16
weights on a batch of 8, the loss sum(h_L ** 2).

Run: python benchmarks/compile_time.py [L ...]
It prints, per L, the wall and CPU seconds of the first call (the compile, with the disk cache
off) and the compiler's stages (pipeline.Timings). A benchmark, not a test: it asserts nothing
about time (the machines it runs on are shared and noisy; CPU seconds vary less)."""

from __future__ import annotations

import os
import sys
import time

os.environ["DIFFC_CACHE"] = "0"  # every compile is cold

import numpy as np  # noqa: E402

import diffc  # noqa: E402
from diffc.pipeline import Timings  # noqa: E402

LAYERS = (2, 4, 8, 16, 32, 64)
WIDTH, BATCH = 16, 8


def mlp_source(layers: int) -> str:
    lines = ["fn loss(p, x) {", "    let h0 = x;"]
    lines += [f"    let h{i + 1} = tanh(h{i} @ p.w{i} + p.b{i});" for i in range(layers)]
    lines += [f"    sum(h{layers} * h{layers})", "}"]
    return "\n".join(lines) + "\n"


def cold_compile(layers: int) -> tuple[float, float, Timings]:
    """(wall s, CPU s, stages) of the first value_and_grad call of the L-layer MLP."""
    rng = np.random.default_rng(0)
    p = {f"w{i}": rng.standard_normal((WIDTH, WIDTH)) * 0.3 for i in range(layers)}
    p.update({f"b{i}": np.zeros(WIDTH) for i in range(layers)})
    x = rng.standard_normal((BATCH, WIDTH))
    vg = diffc.value_and_grad(diffc.compile(mlp_source(layers), name=f"mlp{layers}").loss)
    arrays, key = vg.signature(p, x)
    timings = Timings()
    wall, cpu = time.perf_counter(), time.process_time()
    vg.compiled(arrays, key, timings)
    return time.perf_counter() - wall, time.process_time() - cpu, timings


def main(argv: list[str]) -> None:
    layers = [int(a) for a in argv] or list(LAYERS)
    print(f"{'L':>4} {'wall s':>8} {'cpu s':>8}  stages (wall s)")
    for n in layers:
        wall, cpu, timings = cold_compile(n)
        stages = ", ".join(f"{k} {v:.3f}" for k, v in timings.items())
        print(f"{n:4d} {wall:8.3f} {cpu:8.3f}  {stages}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

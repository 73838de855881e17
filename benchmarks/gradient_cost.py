"""The cost of a gradient against its forward pass, from small to large sizes, for programs
that read arrays at computed indices (issue 12): a comprehension's difference loss, a 2x2 max
pool written as `maximum` of four reads, a `map` reading two arrays at gathered positions, a
2-D stencil as a nested comprehension. With the reads' cotangents added in place into one
buffer the ratio gradient / forward stays flat as the size grows; a dense cotangent per read
made it grow with the size (quadratic gradients). The difference loss written with slices and
its gradient by hand in NumPy are references.

Run: python benchmarks/gradient_cost.py [--quick]
This is a benchmark, not a test: it prints medians (us) and ratios and asserts nothing about
speed (the machines it runs on are shared and noisy)."""

from __future__ import annotations

import argparse
import time

import numpy as np

import diffc

SOURCE = """
fn diff(x) = sum(for i in 0..len(x) - 1 => (x[i + 1] - x[i]) ** 2)
fn diff_slices(x) = sum((x[1:] - x[:-1]) ** 2)
fn pool(x) {
    let s = shape(x);
    let p = for n in 0..s[0], c in 0..s[1], i in 0..s[2] // 2, j in 0..s[3] // 2 =>
        maximum(maximum(x[n, c, 2 * i, 2 * j], x[n, c, 2 * i + 1, 2 * j]),
                maximum(x[n, c, 2 * i, 2 * j + 1], x[n, c, 2 * i + 1, 2 * j + 1]));
    sum(p * p)
}
fn gathered(a, b) = sum(map(fn(k) => a[k] * b[(k * 7) % len(b)] + a[(k + 1) % len(a)], arange(len(a))))
fn stencil(u) {
    let s = shape(u);
    let l = for i in 1..s[0] - 1, j in 1..s[1] - 1 =>
        u[i - 1, j] + u[i + 1, j] + u[i, j - 1] + u[i, j + 1] - 4.0 * u[i, j];
    sum(l * l)
}
"""


def numpy_diff_value_and_grad(x):
    d = np.diff(x)
    g = np.zeros_like(x)
    g[1:] += 2 * d
    g[:-1] -= 2 * d
    return np.sum(d * d), g


def families(quick: bool):
    """(family, size label, function name, arguments, NumPy value-and-grad or None)."""
    rng = np.random.default_rng(0)
    ns = [1000, 4000, 16000] if quick else [1000, 4000, 16000, 100000]
    for n in ns:
        x = rng.standard_normal(n)
        yield "diff", f"n={n}", "diff", (x,), numpy_diff_value_and_grad
        yield "diff (slices)", f"n={n}", "diff_slices", (x,), None
    for b in [8, 16, 32] if quick else [8, 16, 32, 64]:
        yield "max pool 2x2", f"batch={b}", "pool", (rng.standard_normal((b, 3, 16, 16)),), None
    for n in ns:
        yield "gathered map", f"n={n}", "gathered", (rng.standard_normal(n), rng.standard_normal(n)), None
    for n in [32, 64, 128] if quick else [32, 64, 128, 256]:
        yield "2-D stencil", f"{n}x{n}", "stencil", (rng.standard_normal((n, n)),), None


def median_us(fn, repeats: int = 7) -> float:
    """The median over `repeats` of the mean time of a batch of calls long enough to time."""
    fn()
    batch = 1
    while True:
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - t > 0.02 or batch >= 1 << 16:
            break
        batch *= 4
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        times.append((time.perf_counter() - t) / batch)
    return float(np.median(times)) * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the three smaller sizes of each family only")
    quick = ap.parse_args().quick
    m = diffc.compile(SOURCE, "gradient_cost.dfl")
    print(f"{'family':16s} {'size':12s} {'forward us':>11s} {'grad us':>11s} {'ratio':>7s} {'numpy vg us':>12s}")
    for family, size, name, args, numpy_vg in families(quick):
        fn = m.function(name)
        vg = diffc.value_and_grad(fn, argnums=tuple(range(len(args))))
        if numpy_vg is not None:  # the same numbers first, or the times mean nothing
            (value, (g, *_)), (want_value, want_g) = vg(*args), numpy_vg(*args)
            np.testing.assert_allclose([value, *g], [want_value, *want_g], rtol=1e-9, atol=1e-9)
        fwd, grad = median_us(lambda: fn(*args)), median_us(lambda: vg(*args))
        ref = f"{median_us(lambda: numpy_vg(*args)):12.1f}" if numpy_vg else f"{'':12s}"
        print(f"{family:16s} {size:12s} {fwd:11.1f} {grad:11.1f} {grad / fwd:7.1f} {ref}", flush=True)


if __name__ == "__main__":
    main()

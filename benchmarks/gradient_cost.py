"""The cost of a gradient against its forward pass, from small to large sizes, for programs
that read arrays at computed indices (issue 12): a comprehension's difference loss, a 2x2 max
pool written as `maximum` of four reads, a `map` reading two arrays at gathered positions, a
2-D stencil as a nested comprehension, `nn.max_pool2d`, and maps over `windows` (a max over 4,
a dot product with a slice of the same array, a sum over 8, a min over 32). With the reads'
cotangents added in place into one buffer the ratio gradient / forward stays flat as the size
grows; a dense cotangent per read made it grow with the size (quadratic gradients). The
difference loss written with slices and its gradient by hand in NumPy are references.

Run: python benchmarks/gradient_cost.py [--quick] [--only FAMILY...]
This is a benchmark, not a test: it prints medians (us) and the median of ratios timed in
turns, and asserts nothing about speed (the machines it runs on are shared and noisy)."""

from __future__ import annotations

import argparse
import time

import numpy as np

import diffc

SOURCE = """
import nn
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
fn max_pool(x) {
    let p = nn.max_pool2d(x, 2, 2);
    sum(p * p)
}
fn window_max(x) = sum(map(fn(w) => max(w), windows(x, 4)))
fn window_dot(x) = sum(map(fn(w) => sum(w * x[:4]), windows(x, 4)) ** 2)
fn window_sum(x) = sum(map(fn(w) => sum(w), windows(x, 8)))
fn window_min(x) = sum(map(fn(w) => min(w), windows(x, 32)) * x[31:])
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
    ns = [1000, 4000, 16000] if quick else [1000, 4000, 16000, 100000, 1000000]
    for n in ns:
        x = rng.standard_normal(n)
        yield "diff", f"n={n}", "diff", (x,), numpy_diff_value_and_grad
        yield "diff (slices)", f"n={n}", "diff_slices", (x,), None
    batches = [8, 16, 32] if quick else [8, 16, 32, 64, 128]
    for b in batches:
        yield "max pool 2x2", f"batch={b}", "pool", (rng.standard_normal((b, 3, 16, 16)),), None
    for b in batches:
        yield "nn.max_pool2d", f"batch={b}", "max_pool", (rng.standard_normal((b, 16, 32, 32)),), None
    for n in ns:
        yield "gathered map", f"n={n}", "gathered", (rng.standard_normal(n), rng.standard_normal(n)), None
    for n in [32, 64, 128] if quick else [32, 64, 128, 256, 512]:
        yield "2-D stencil", f"{n}x{n}", "stencil", (rng.standard_normal((n, n)),), None
    for n in ns:
        yield "windows: max", f"n={n}", "window_max", (rng.standard_normal(n),), None
        yield "windows: dot", f"n={n}", "window_dot", (rng.standard_normal(n),), None
        yield "windows: sum of 8", f"n={n}", "window_sum", (rng.standard_normal(n),), None
        yield "windows: min of 32", f"n={n}", "window_min", (rng.standard_normal(n),), None


def _batch(fn) -> int:
    """Calls of fn enough to time (20 ms at least)."""
    fn()
    batch = 1
    while True:
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        if time.perf_counter() - t > 0.02 or batch >= 1 << 16:
            return batch
        batch *= 4


def _mean_us(fn, batch: int, clock=time.perf_counter) -> float:
    t = clock()
    for _ in range(batch):
        fn()
    return (clock() - t) / batch * 1e6


def median_us(fn, repeats: int = 7) -> float:
    """The median over `repeats` of the mean time of a batch of calls long enough to time."""
    batch = _batch(fn)
    return float(np.median([_mean_us(fn, batch) for _ in range(repeats)]))


def paired_us(fwd, grad, repeats: int = 9) -> tuple[float, float, float]:
    """(median forward us, median gradient us, median ratio) with the two timed in turns, so
    that each ratio compares times taken under the same load of a shared machine, in CPU time
    (diffc runs these on one thread: the time spent waiting for the core is left out)."""
    bf, bg = _batch(fwd), _batch(grad)
    pairs = [(_mean_us(fwd, bf, time.process_time), _mean_us(grad, bg, time.process_time)) for _ in range(repeats)]
    f, g = np.array(pairs).T
    return float(np.median(f)), float(np.median(g)), float(np.median(g / f))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the three smaller sizes of each family only")
    ap.add_argument("--only", nargs="+", metavar="FAMILY", help="the families whose names start with these")
    args = ap.parse_args()
    m = diffc.compile(SOURCE, "gradient_cost.dfl")
    print(f"{'family':16s} {'size':12s} {'forward us':>11s} {'grad us':>11s} {'ratio':>7s} {'numpy vg us':>12s}")
    for family, size, name, fargs, numpy_vg in families(args.quick):
        if args.only and not family.startswith(tuple(args.only)):
            continue
        fn = m.function(name)
        vg = diffc.value_and_grad(fn, argnums=tuple(range(len(fargs))))
        if numpy_vg is not None:  # the same numbers first, or the times mean nothing
            (value, (g, *_)), (want_value, want_g) = vg(*fargs), numpy_vg(*fargs)
            np.testing.assert_allclose([value, *g], [want_value, *want_g], rtol=1e-9, atol=1e-9)
        fwd, grad, ratio = paired_us(lambda: fn(*fargs), lambda: vg(*fargs))
        ref = f"{median_us(lambda: numpy_vg(*fargs)):12.1f}" if numpy_vg else f"{'':12s}"
        print(f"{family:16s} {size:12s} {fwd:11.1f} {grad:11.1f} {ratio:7.1f} {ref}", flush=True)


if __name__ == "__main__":
    main()

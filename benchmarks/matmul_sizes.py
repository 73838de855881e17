"""Matrix products at one thread, diffc beside NumPy's BLAS and PyTorch's (issue 12): square
256 to 2048 and the MLP family's rectangles, f64 and f32, with plain, transposed and strided
operands, a batch of products, and value_and_grad of losses whose products are transposed.

Run: python -m benchmarks.matmul_sizes [--quick] [--only SUBSTRING] [--wall]
(with PyTorch importable, e.g. from /tmp/rayvenv, for its column). The process is pinned to
one core and every library to one thread before NumPy is imported. Each case is checked
against NumPy before it is timed; the libraries are timed in turns (a round of each, many
rounds, medians of CPU time, or of wall time with --wall), so that a change in the machine's
load hits them alike. `ratio` is diffc's time over the fastest peer's. A benchmark, not a
test: it asserts nothing about speed."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from benchmarks import affinity, environment

SOURCE = """
fn mm(a, b) = a @ b
fn mm_ta(a, b) = transpose(a) @ b
fn mm_tb(a, b) = a @ transpose(b)
fn mm_rows2(a, b) = a[::2] @ b
fn mm_cols2(a, b) = a @ b[:, ::2]
fn mm_bt(a, b) = a @ transpose(b, [0, 2, 1])
fn loss_tb(a, b) = sum((a @ transpose(b)) ** 2)
fn loss_ta(a, b) = sum((transpose(a) @ b) ** 2)
"""

# name: (diffc function, NumPy's expression, the operands' shapes for an (m, k, n) product)
LAYOUTS = {
    "a@b": ("mm", lambda a, b: a @ b, lambda m, k, n: ((m, k), (k, n))),
    "a^T@b": ("mm_ta", lambda a, b: a.T @ b, lambda m, k, n: ((k, m), (k, n))),
    "a@b^T": ("mm_tb", lambda a, b: a @ b.T, lambda m, k, n: ((m, k), (n, k))),
    "a[::2]@b": ("mm_rows2", lambda a, b: a[::2] @ b, lambda m, k, n: ((2 * m, k), (k, n))),
    "a@b[:,::2]": ("mm_cols2", lambda a, b: a @ b[:, ::2], lambda m, k, n: ((m, k), (k, 2 * n))),
}
SQUARE = (256, 512, 1024, 2048)
MLP = ((128, 784, 512), (256, 1024, 1024))


def numpy_loss_tb(a, b):
    c = a @ b.T
    return (c * c).sum(), (2 * c @ b, 2 * c.T @ a)


def numpy_loss_ta(a, b):
    c = a.T @ b
    return (c * c).sum(), (2 * b @ c.T, 2 * a @ c)


def cases(quick: bool):
    """(size label, layout label, diffc function, NumPy function, torch function or None,
    operand shapes, value_and_grad?) for each case."""
    sizes = [(n, n, n) for n in SQUARE[: 3 if quick else 4]] + list(MLP)
    for m, k, n in sizes:
        for layout, (fn, np_fn, shapes) in LAYOUTS.items():
            yield f"{m}x{k}x{n}", layout, fn, np_fn, np_fn, shapes(m, k, n), False
    plain = LAYOUTS["a@b"][1]
    batch = ((8, 256, 256), (8, 256, 256))
    yield "8x256x256x256", "batched", "mm", plain, plain, batch, False
    bt = lambda a, b: a @ b.swapaxes(1, 2)  # noqa: E731 (NumPy's and PyTorch's)
    yield "8x256x256x256", "batched a@b^T", "mm_bt", bt, bt, batch, False
    for m, k, n in sizes[:2] + [MLP[0]]:
        yield f"{m}x{k}x{n}", "vg sum((a@b^T)^2)", "loss_tb", numpy_loss_tb, None, ((m, k), (n, k)), True
        yield f"{m}x{k}x{n}", "vg sum((a^T@b)^2)", "loss_ta", numpy_loss_ta, None, ((k, m), (k, n)), True


def torch_value_and_grad(torch, np_fn):
    """The loss's value and gradient by PyTorch's autograd, the loss written as NumPy's."""
    transposed_a = np_fn is numpy_loss_ta

    def vg(a, b):
        a, b = a.detach().requires_grad_(), b.detach().requires_grad_()
        c = a.T @ b if transposed_a else a @ b.T
        loss = (c * c).sum()
        loss.backward()
        return loss, (a.grad, b.grad)

    return vg


def _leaves(result, grad: bool) -> list:
    """The arrays of a product (one) or of a value and its two gradients (three)."""
    return [result[0], *result[1]] if grad else [result]


def timed_rounds(fns: list, budget: float, clock=time.process_time) -> list[float]:
    """Median seconds of a call of each of fns, timed in turns: a round calls each function as
    many times as fill about 20 ms, and rounds go on until `budget` seconds have passed (at
    least 5 rounds). The clock is the process's CPU time by default: at one thread on a
    shared machine it leaves out the time another process had the core."""
    for fn in fns:
        fn()
    batches = []
    for fn in fns:
        t, count = time.perf_counter(), 0
        while time.perf_counter() - t < 0.02:
            fn()
            count += 1
        batches.append(count)
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < 5 or time.perf_counter() - start < budget:
        for fn, batch, ts in zip(fns, batches, times):
            t = clock()
            for _ in range(batch):
                fn()
            ts.append((clock() - t) / batch)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="square sizes up to 1024 only")
    ap.add_argument("--only", default="", help="only the cases whose size or layout contains this")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timing per case")
    ap.add_argument("--wall", action="store_true", help="time by the wall clock, not CPU time")
    args = ap.parse_args(argv)

    import numpy as np

    import diffc

    try:
        import torch
    except ImportError:
        torch = None
    environment.pin_libraries(1)
    clock = time.perf_counter if args.wall else time.process_time
    module = diffc.compile(SOURCE, "matmul_sizes.dfl")
    rng = np.random.default_rng(0)
    head = f"{'size':>15s} {'dtype':5s} {'layout':18s} {'diffc us':>10s} {'numpy us':>10s}"
    print(head + (f" {'torch us':>10s}" if torch else "") + f" {'ratio':>6s}")
    for size, layout, fn_name, np_fn, torch_fn, shapes, grad in cases(args.quick):
        if args.only not in f"{size} {layout}":
            continue
        for dtype in (np.float64, np.float32):
            a, b = (rng.standard_normal(s).astype(dtype) for s in shapes)
            fn = module.function(fn_name)
            if grad:
                fn = diffc.value_and_grad(fn, argnums=(0, 1))
            got, want = fn(a, b), np_fn(a, b)
            tol = 1e-9 if dtype == np.float64 else 2e-3
            for g, w in zip(_leaves(got, grad), _leaves(want, grad)):
                np.testing.assert_allclose(g, w, rtol=tol, atol=tol * np.sqrt(shapes[0][-1]))
            fns = [lambda: fn(a, b), lambda: np_fn(a, b)]
            if torch is not None:
                ta, tb = torch.from_numpy(a), torch.from_numpy(b)
                t_fn = torch_value_and_grad(torch, np_fn) if grad else torch_fn
                fns.append(lambda: t_fn(ta, tb))
            us = [t * 1e6 for t in timed_rounds(fns, args.budget, clock)]
            cells = " ".join(f"{t:10.1f}" for t in us)
            dt = "f64" if dtype == np.float64 else "f32"
            print(f"{size:>15s} {dt:5s} {layout:18s} {cells} {us[0] / min(us[1:]):6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="diffc-matmul-cache-") as cache_dir:
        environment.prepare(1, cache_dir)
        affinity.pin_to_one_core()
        sys.exit(main(sys.argv[1:]))

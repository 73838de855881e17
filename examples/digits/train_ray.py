"""Data-parallel training of the digits MLP on Ray: each worker holds a shard of the training
set and computes the gradient of mlp.dfl's loss on a minibatch of it; the driver averages the
gradients and takes one step. The compiled functions travel to the workers pickled (as the
program's text and the function's name), and each worker compiles them once, or loads them
from its machine's disk cache.

    python examples/digits/train_ray.py                  # a local Ray cluster of 2 workers
    python examples/digits/train_ray.py --address auto   # the cluster `ray start` joined
"""

import argparse
import time
from pathlib import Path

import numpy as np
import ray

import diffc

HERE = Path(__file__).resolve().parent


@ray.remote
class Shard:
    """One worker: its rows of the training set, and the gradient of the loss on them."""

    def __init__(self, value_and_grad, x, y, seed):
        self.value_and_grad, self.x, self.y = value_and_grad, x, y
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(0)

    def gradient(self, params, batch):
        if len(self.order) < batch:  # a new epoch of this shard, in a new order
            self.order = self.rng.permutation(len(self.x))
        rows, self.order = self.order[:batch], self.order[batch:]
        return self.value_and_grad(params, self.x[rows], self.y[rows])


def average(trees):
    """The mean of gradient records leaf by leaf (equal shares: each worker used `batch` rows)."""
    return {name: sum(t[name] for t in trees) / len(trees) for name in trees[0]}


def train(workers=2, steps=600, batch=32, lr=0.5, address=None, seed=0, log_every=100):
    """Train from a fixed seed; connects to Ray unless the caller already did."""
    from data import digits

    (x, y), (x_test, y_test) = digits()
    m = diffc.load(HERE / "mlp.dfl")
    started = not ray.is_initialized()
    if started and address is None:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    elif started:
        ray.init(address=address)
    try:
        shards = [
            Shard.remote(diffc.value_and_grad(m.loss), xs, ys, seed + i)
            for i, (xs, ys) in enumerate(zip(np.array_split(x, workers), np.array_split(y, workers)))
        ]
        params = m.init(np.array([0, seed]))
        start, losses = time.perf_counter(), []
        for step in range(steps):
            ref = ray.put(params)
            results = ray.get([s.gradient.remote(ref, batch) for s in shards])
            losses.append(float(np.mean([loss for loss, _ in results])))
            params = m.update(params, average([g for _, g in results]), lr)
            if log_every and (step + 1) % log_every == 0:
                print(f"step {step + 1:4d}  loss {np.mean(losses[-log_every:]):.4f}")
        seconds = time.perf_counter() - start
    finally:
        if started:
            ray.shutdown()
    accuracy = float(m.accuracy(params, x_test, y_test))
    return params, losses, accuracy, seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--address", help="a running Ray cluster (`auto`: the one this machine joined)")
    args = ap.parse_args()
    _, _, accuracy, seconds = train(args.workers, args.steps, address=args.address)
    print(f"test accuracy {accuracy:.3f} after {args.steps} steps on {args.workers} workers in {seconds:.1f} s")


if __name__ == "__main__":
    main()

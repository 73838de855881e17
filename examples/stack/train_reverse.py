"""Train the neural-stack reverser of reverse.dfl on sequences of length 8, then test it on
sequences of length 8, 16 and 32 that it never saw; then the same model, from the same start
on the same batches, in PyTorch (1 thread) if it is installed.

    python examples/stack/train_reverse.py [--steps 1500]
"""

import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from support import compare, diffc_adam, parse_args, torch_adam, train_loop  # noqa: E402

SYMBOLS = 8  # a1..an are codes 0..7; 8 is the delimiter, 9 the blank


def batch(rng, size, n):
    """(one-hot inputs [size, 2n + 1, 10], targets [size, 2n + 1], mask of the output steps)."""
    seq = rng.integers(0, SYMBOLS, size=(size, n))
    codes = np.concatenate([seq, np.full((size, 1), SYMBOLS), np.full((size, n), SYMBOLS + 1)], axis=1)
    xs = np.eye(SYMBOLS + 2)[codes]
    targets = np.concatenate([np.zeros((size, n + 1), np.int64), seq[:, ::-1]], axis=1)
    mask = np.arange(2 * n + 1) > n
    return xs, targets, np.broadcast_to(mask, targets.shape).copy()


def init(rng, hidden=32, width=16):
    def w(*shape):
        return rng.normal(size=shape) / np.sqrt(shape[-1])

    inputs = SYMBOLS + 2
    return {
        "wx": w(hidden, inputs), "wr": w(hidden, width), "b": np.zeros(hidden),
        "wd": w(hidden), "bd": np.array(0.0), "wu": w(hidden), "bu": np.array(0.0),
        "wv": w(width, hidden), "bv": np.zeros(width), "wy": w(SYMBOLS, hidden), "by": np.zeros(SYMBOLS),
    }  # fmt: skip


def accuracy(predict, rng, n, size=200):
    """(the fraction of output symbols right, the fraction of sequences reversed exactly)."""
    xs, targets, _ = batch(rng, size, n)
    right = (predict(xs) == targets)[:, n + 1 :]
    return right.mean(), right.all(axis=1).mean()


def train(name, step, predict, steps, log):
    """Train from seed 0 with `step(batch) -> loss`; print progress and accuracies."""
    rng = np.random.default_rng(1)

    def progress(t, loss):
        return f"{name:8s} step {t:5d}  loss {loss:.4f}"

    losses, seconds = train_loop(lambda _: step(*batch(rng, 16, 8)), range(steps), 500 if log else 0, progress)
    results = {n: accuracy(predict, rng, n) for n in (8, 16, 32)}
    for n, (per_symbol, whole) in results.items():
        print(f"{name:8s} length {n:2d}: {per_symbol:.3f} of symbols and {whole:.3f} of sequences reversed exactly")
    print(f"{name:8s} trained in {seconds:.1f} s")
    return losses


def diffc_model(p, lr):
    m = diffc.load(HERE / "reverse.dfl")
    state, step = diffc_adam(m, p, lr)
    return step, lambda xs: m.predict(state["p"], xs)


def torch_model(torch, p, lr):
    """reverse.dfl and ds.dfl's stack written with PyTorch, a batch at a time."""
    w, adam = torch_adam(torch, p, lr)
    relu = torch.relu

    def run(xs):
        b, steps, _ = xs.shape
        values, strength = torch.zeros(b, steps, len(w["bv"])), torch.zeros(b, steps)
        r, ys = torch.zeros(b, len(w["bv"])), []
        for t in range(steps):
            h = torch.tanh(xs[:, t] @ w["wx"].T + r @ w["wr"].T + w["b"])
            d, u = torch.sigmoid(h @ w["wd"] + w["bd"]), torch.sigmoid(h @ w["wu"] + w["bu"])
            v, y = torch.tanh(h @ w["wv"].T + w["bv"]), h @ w["wy"].T + w["by"]
            above = strength.flip(1).cumsum(1).flip(1) - strength  # strength above each slot
            strength = relu(strength - relu(u[:, None] - above))  # pop u
            slot = torch.arange(steps) == t  # push v with strength d
            strength = torch.where(slot, d[:, None], strength)
            values = torch.where(slot[None, :, None], v[:, None, :], values)
            above = strength.flip(1).cumsum(1).flip(1) - strength
            r = (torch.minimum(strength, relu(1.0 - above))[:, :, None] * values).sum(1)
            ys.append(y)
        return torch.stack(ys, 1)

    def step(xs, targets, mask):
        ys = run(torch.tensor(xs))
        labels = torch.tensor(targets).reshape(-1)
        per_step = torch.nn.functional.cross_entropy(ys.reshape(-1, SYMBOLS), labels, reduction="none")
        return adam((per_step * torch.tensor(mask).reshape(-1)).sum() / mask.sum())

    def predict(xs):
        with torch.no_grad():
            return run(torch.tensor(xs)).argmax(-1).numpy()

    return step, predict


def main():
    args = parse_args(__doc__, steps=1500, lr=1e-2, png="reverse_loss.png")
    p = init(np.random.default_rng(0))
    curves = {"diffc": train("diffc", *diffc_model(p, args.lr), args.steps, True)}
    compare(args, curves, lambda torch: train("PyTorch", *torch_model(torch, p, args.lr), args.steps, True))


if __name__ == "__main__":
    main()

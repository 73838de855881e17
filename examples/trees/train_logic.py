"""Train the recursive net of logic.dfl on random Boolean formulas of depth up to 4, then test
it on new formulas of depth 4 and on deeper ones (6 and 8) than it ever saw; then the same
model, from the same start on the same batches, in PyTorch (1 thread) if it is installed.

    python examples/trees/train_logic.py [--steps 1000]
"""

import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from support import compare, diffc_adam, parse_args, torch_adam, train_loop  # noqa: E402

OPS = [np.logical_and, np.logical_or, np.logical_xor]


def formula(rng, depth, nodes):
    """A random formula of at most `depth` levels as index arrays padded to `nodes` entries,
    and its truth value."""
    left, right = np.full(nodes, -1), np.full(nodes, -1)
    op, leaf = np.zeros(nodes, np.int64), np.zeros(nodes, np.int64)
    count = 0

    def grow(d):
        nonlocal count
        i, count = count, count + 1
        if d == 0 or (d < depth and rng.random() < 0.25):
            leaf[i] = rng.integers(2)
            return bool(leaf[i])
        op[i] = rng.integers(3)
        left[i] = count
        a = grow(d - 1)
        right[i] = count
        b = grow(d - 1)
        return bool(OPS[op[i]](a, b))

    return (left, right, op, leaf), grow(depth)


def batch(rng, size, depth):
    nodes = 2 ** (depth + 1) - 1
    trees, truth = zip(*(formula(rng, depth, nodes) for _ in range(size)))
    ts = {name: np.stack([t[k] for t in trees]) for k, name in enumerate(["left", "right", "op", "leaf"])}
    return ts, np.array(truth, dtype=np.int64)


def init(rng, width=24):
    return {
        "leaf": rng.normal(size=(2, width)) * 0.5,
        "w": rng.normal(size=(3, width, 2 * width)) / np.sqrt(2 * width),
        "b": np.zeros((3, width)),
        "out": rng.normal(size=(2, width)) / np.sqrt(width),
        "bo": np.zeros(2),
    }


def train(name, step, accuracy, steps):
    rng = np.random.default_rng(1)

    def progress(t, loss):
        return f"{name:8s} step {t:5d}  loss {loss:.4f}"

    losses, seconds = train_loop(lambda _: step(*batch(rng, 32, 4)), range(steps), 250, progress)
    for depth in (4, 6, 8):
        print(f"{name:8s} depth {depth}: accuracy {accuracy(*batch(rng, 500, depth)):.3f} on new formulas")
    print(f"{name:8s} trained in {seconds:.1f} s")
    return losses


def diffc_model(m, p, lr):
    state, step = diffc_adam(m, p, lr)
    return step, lambda ts, truth: m.accuracy(state["p"], ts, truth)


def torch_model(torch, p, lr):
    """logic.dfl's recursive net in PyTorch: the recursion runs in Python, tree by tree."""
    w, adam = torch_adam(torch, p, lr)

    def encode(t, i):
        if t["left"][i] < 0:
            return w["leaf"][t["leaf"][i]]
        op = t["op"][i]
        both = torch.cat([encode(t, t["left"][i]), encode(t, t["right"][i])])
        return torch.tanh(w["w"][op] @ both + w["b"][op])

    def scores(ts):
        trees = [{k: v[j] for k, v in ts.items()} for j in range(len(ts["left"]))]
        return torch.stack([w["out"] @ encode(t, 0) + w["bo"] for t in trees])

    def step(ts, truth):
        return adam(torch.nn.functional.cross_entropy(scores(ts), torch.tensor(truth)))

    def accuracy(ts, truth):
        with torch.no_grad():
            return (scores(ts).argmax(1).numpy() == truth).mean()

    return step, accuracy


def main():
    args = parse_args(__doc__, steps=1000, lr=3e-3, png="logic_loss.png")
    m = diffc.load(HERE / "logic.dfl")
    p = init(np.random.default_rng(0))
    curves = {"diffc": train("diffc", *diffc_model(m, p, args.lr), args.steps)}
    compare(args, curves, lambda torch: train("PyTorch", *torch_model(torch, p, args.lr), args.steps))


if __name__ == "__main__":
    main()

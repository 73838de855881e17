"""Train the digits MLP (mlp.dfl) with minibatch SGD driven from Python; then the same model,
from the same start on the same minibatches, in PyTorch (1 thread) if it is installed.

    python examples/digits/train_mlp.py [--epochs 50] [--png mlp_loss.png]
"""

import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from data import digits  # noqa: E402
from support import Clock, compare, parse_args, torch_params, train_loop  # noqa: E402


def batches(n, batch, epochs, seed=0):
    """The row indices of every minibatch, epoch by epoch (a new order each epoch)."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(n)
        yield [order[i : i + batch] for i in range(0, n - batch + 1, batch)]


def train(name, step, accuracy, data, epochs, batch):
    """Minibatch training with `step(x, y) -> loss`; prints progress and the test accuracy."""
    (x, y), (x_test, y_test) = data

    def epoch(rows_of_epoch):
        return np.mean([step(x[rows], y[rows]) for rows in rows_of_epoch])

    def progress(i, loss):
        return f"{name:8s} epoch {i:3d}  loss {loss:.4f}"

    curve, seconds = train_loop(epoch, batches(len(x), batch, epochs), 10, progress, window=1)
    print(f"{name:8s} test accuracy {accuracy(x_test, y_test):.4f}, trained in {seconds:.2f} s")
    return curve


def diffc_model(m, p, lr):
    value_and_grad = diffc.value_and_grad(m.loss)
    state = {"p": p}

    def step(x, y):
        loss, g = value_and_grad(state["p"], x, y)
        state["p"] = m.update(state["p"], g, lr)
        return loss

    return step, lambda x, y: m.accuracy(state["p"], x, y)


def torch_model(torch, p, lr):
    w = torch_params(torch, p)

    def scores(x):
        return torch.tanh(torch.tensor(x) @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(scores(x), torch.tensor(y))
        for t in w.values():
            t.grad = None
        loss.backward()
        with torch.no_grad():
            for t in w.values():
                t -= lr * t.grad
        return loss.item()

    def accuracy(x, y):
        with torch.no_grad():
            return (scores(x).argmax(1).numpy() == y).mean()

    return step, accuracy


def train_in_dfl(m, p, data, args):
    """The same training with mlp.dfl's `train`: epochs, shuffling and minibatches in DFL, one call."""
    (x, y), (x_test, y_test) = data
    clock = Clock()
    p, curve = m.train(p, x, y, np.array([0, 1]), args.epochs, args.batch, args.lr)
    seconds = clock()
    print(f"diffc, the loop in DFL: test accuracy {m.accuracy(p, x_test, y_test):.4f}, trained in {seconds:.2f} s")
    return curve


def main():
    args = parse_args(__doc__, epochs=50, batch=32, lr=0.5, png="mlp_loss.png")
    data = digits()
    m = diffc.load(HERE / "mlp.dfl")
    p = m.init(np.array([0, 0]))
    curves = {"diffc": train("diffc", *diffc_model(m, p, args.lr), data, args.epochs, args.batch)}
    curves["diffc, the loop in DFL"] = train_in_dfl(m, p, data, args)
    compare(
        args,
        curves,
        lambda torch: train("PyTorch", *torch_model(torch, p, args.lr), data, args.epochs, args.batch),
        xlabel="epoch",
    )


if __name__ == "__main__":
    main()

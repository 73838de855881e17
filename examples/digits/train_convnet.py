"""Train the digits convnet (convnet.dfl) with Adam and a cosine-decaying learning rate; then
the same model, from the same start on the same minibatches, in PyTorch (1 thread) if it is
installed.

    python examples/digits/train_convnet.py [--epochs 30] [--png convnet_loss.png]
"""

import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from data import digits  # noqa: E402
from support import compare, diffc_adam, parse_args, torch_adam, train_loop  # noqa: E402


def train(name, step, accuracy, data, args):
    """Minibatch training with `step(x, y, lr) -> loss`; prints progress and the test accuracy."""
    (x, y), (x_test, y_test) = data
    rng = np.random.default_rng(1)
    steps_per_epoch = len(x) // args.batch
    total = args.epochs * steps_per_epoch

    def epoch(e):
        order, losses = rng.permutation(len(x)), []
        for i in range(steps_per_epoch):
            t = e * steps_per_epoch + i
            lr = 0.5 * args.lr * (1 + np.cos(np.pi * t / total))
            rows = order[i * args.batch : (i + 1) * args.batch]
            losses.append(step(x[rows], y[rows], lr))
        return np.mean(losses)

    def progress(i, loss):
        return f"{name:8s} epoch {i:3d}  loss {loss:.4f}"

    curve, seconds = train_loop(epoch, range(args.epochs), 5, progress, window=1)
    print(f"{name:8s} test accuracy {accuracy(x_test, y_test):.4f}, trained in {seconds:.2f} s")
    return curve


def diffc_model(m, p):
    state, step = diffc_adam(m, p)
    return step, lambda x, y: m.accuracy(state["p"], x, y)


def torch_model(torch, p):
    """convnet.dfl in PyTorch: the same layers, initial values and Adam."""
    F = torch.nn.functional
    w, adam = torch_adam(torch, p)

    def scores(x):
        h = torch.tensor(x).reshape(-1, 1, 8, 8)
        h = F.max_pool2d(F.relu(F.conv2d(h, w["c1.w"], w["c1.b"], padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w["c2.w"], w["c2.b"], padding=1)), 2)
        return h.reshape(len(x), -1) @ w["out.w"].T + w["out.b"]

    def step(x, y, lr):
        return adam(F.cross_entropy(scores(x), torch.tensor(y)), lr)

    def accuracy(x, y):
        with torch.no_grad():
            return (scores(x).argmax(1).numpy() == y).mean()

    return step, accuracy


def main():
    args = parse_args(__doc__, epochs=30, batch=32, lr=6e-3, png="convnet_loss.png")
    data = digits()
    m = diffc.load(HERE / "convnet.dfl")
    p = m.init(np.array([0, 0]))
    curves = {"diffc": train("diffc", *diffc_model(m, p), data, args)}
    compare(args, curves, lambda torch: train("PyTorch", *torch_model(torch, p), data, args), xlabel="epoch")


if __name__ == "__main__":
    main()

"""Train the digits convnet (convnet.dfl) with Adam and a cosine-decaying learning rate; then
the same model, from the same start on the same minibatches, in PyTorch (1 thread) if it is
installed.

    python examples/digits/train_convnet.py [--epochs 30] [--png convnet_loss.png]
"""

import argparse
import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from data import digits  # noqa: E402
from support import Clock, save_curve, torch_1thread  # noqa: E402


def train(name, step, accuracy, data, args):
    """Minibatch training with `step(x, y, lr) -> loss`; prints progress and the test accuracy."""
    (x, y), (x_test, y_test) = data
    rng = np.random.default_rng(1)
    steps_per_epoch = len(x) // args.batch
    total, clock, curve = args.epochs * steps_per_epoch, Clock(), []
    for epoch in range(args.epochs):
        order, losses = rng.permutation(len(x)), []
        for i in range(steps_per_epoch):
            t = epoch * steps_per_epoch + i
            lr = 0.5 * args.lr * (1 + np.cos(np.pi * t / total))
            rows = order[i * args.batch : (i + 1) * args.batch]
            losses.append(step(x[rows], y[rows], lr))
        curve.append(np.mean(losses))
        if (epoch + 1) % 5 == 0:
            print(f"{name:8s} epoch {epoch + 1:3d}  loss {curve[-1]:.4f}")
    seconds = clock()
    print(f"{name:8s} test accuracy {accuracy(x_test, y_test):.4f}, trained in {seconds:.2f} s")
    return curve


def diffc_model(m, p):
    state = {"p": p, "s": m.adam_init(p)}

    def step(x, y, lr):
        loss, state["p"], state["s"] = m.step(state["p"], state["s"], x, y, lr)
        return loss

    return step, lambda x, y: m.accuracy(state["p"], x, y)


def torch_model(torch, p):
    """convnet.dfl in PyTorch: the same layers, initial values and Adam."""
    F = torch.nn.functional
    w = {f"{k}.{j}": torch.tensor(v, requires_grad=True) for k, layer in p.items() for j, v in layer.items()}
    opt = torch.optim.Adam(w.values())

    def scores(x):
        h = torch.tensor(x).reshape(-1, 1, 8, 8)
        h = F.max_pool2d(F.relu(F.conv2d(h, w["c1.w"], w["c1.b"], padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w["c2.w"], w["c2.b"], padding=1)), 2)
        return h.reshape(len(x), -1) @ w["out.w"].T + w["out.b"]

    def step(x, y, lr):
        for group in opt.param_groups:
            group["lr"] = lr
        loss = F.cross_entropy(scores(x), torch.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def accuracy(x, y):
        with torch.no_grad():
            return (scores(x).argmax(1).numpy() == y).mean()

    return step, accuracy


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=6e-3)
    ap.add_argument("--png", default="convnet_loss.png")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = ap.parse_args()
    data = digits()
    m = diffc.load(HERE / "convnet.dfl")
    p = m.init(np.array([0, 0]))
    curves = {"diffc": train("diffc", *diffc_model(m, p), data, args)}
    torch = None if args.no_torch else torch_1thread()
    if torch is not None:
        curves["PyTorch"] = train("PyTorch", *torch_model(torch, p), data, args)
    save_curve(args.png, curves, xlabel="epoch")


if __name__ == "__main__":
    main()

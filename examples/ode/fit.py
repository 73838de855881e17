"""Fit the neural ODE of neural_ode.dfl to a spiral, the trajectory of dy/dt = A y^3 (the
example of torchdiffeq), from random windows of it, then integrate the learnt field over the
whole time span from the first point alone; then the same model, from the same start on the
same windows, in PyTorch (1 thread) if it is installed.

    python examples/ode/fit.py [--steps 4000]
"""

import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from support import compare, diffc_adam, parse_args, pyplot, torch_adam, train_loop  # noqa: E402

A = np.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral(points=200, h=0.05):
    """The observed trajectory: points states h apart from [2, 0], by RK4 with 10 substeps."""

    def field(y):
        return (y**3) @ A

    y, out = np.array([2.0, 0.0]), []
    for _ in range(points):
        out.append(y)
        for _ in range(10):
            k1 = field(y)
            k2 = field(y + h / 20 * k1)
            k3 = field(y + h / 20 * k2)
            k4 = field(y + h / 10 * k3)
            y = y + h / 60 * (k1 + 2 * k2 + 2 * k3 + k4)
    return np.array(out), h


def init(rng, hidden=50):
    return {
        "w1": rng.normal(size=(hidden, 2)) * 0.1, "b1": np.zeros(hidden),
        "w2": rng.normal(size=(2, hidden)) * 0.1, "b2": np.zeros(2),
    }  # fmt: skip


def train(name, step, whole, ys, h, args):
    """Fit to random windows of the spiral with a cosine-decaying learning rate."""
    rng = np.random.default_rng(1)

    def fit(t):
        first = rng.integers(0, len(ys) - args.window, size=args.batch)
        windows = np.stack([ys[i + 1 : i + 1 + args.window] for i in first])
        lr = 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + np.cos(np.pi * t / args.steps))
        return step(ys[first], windows, h, lr)

    def progress(t, loss):
        return f"{name:8s} step {t:5d}  loss {loss:.2e}"

    losses, seconds = train_loop(fit, range(args.steps), 1000, progress)
    error = whole(ys, h)
    print(f"{name:8s} mean squared error over the whole spiral from its first point {error:.2e}, in {seconds:.1f} s")
    return losses


def diffc_model(m, p):
    state, step = diffc_adam(m, p)  # step(y0s, targets, h, lr)

    def whole(ys, h):
        return m.loss(state["p"], ys[:1], ys[None, 1:], h)

    return step, whole, state


def torch_model(torch, p):
    """neural_ode.dfl's field, RK4 and Adam step in PyTorch, the batch at once."""
    w, adam = torch_adam(torch, p)

    def f(y):
        return torch.tanh(y**3 @ w["w1"].T + w["b1"]) @ w["w2"].T + w["b2"]

    def loss_of(y0s, targets, h):
        y, ys = y0s, []
        for _ in range(targets.shape[1]):
            k1 = f(y)
            k2 = f(y + 0.5 * h * k1)
            k3 = f(y + 0.5 * h * k2)
            k4 = f(y + h * k3)
            y = y + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
            ys.append(y)
        return ((torch.stack(ys, 1) - targets) ** 2).mean()

    def step(y0s, targets, h, lr):
        return adam(loss_of(torch.tensor(y0s), torch.tensor(targets), h), lr)

    def whole(ys, h):
        with torch.no_grad():
            return loss_of(torch.tensor(ys[:1]), torch.tensor(ys[None, 1:]), h).item()

    return step, whole


def main():
    args = parse_args(__doc__, steps=4000, window=20, batch=16, png="ode_loss.png")
    ys, h = spiral()
    p = init(np.random.default_rng(0))
    m = diffc.load(HERE / "neural_ode.dfl")
    step, whole, state = diffc_model(m, p)
    curves = {"diffc": train("diffc", step, whole, ys, h, args)}
    save_spiral(args.png.replace("loss", "spiral"), ys, m.trajectory(state["p"], ys[0], ys[1:, 0], h))
    compare(
        args, curves, lambda torch: train("PyTorch", *torch_model(torch, p), ys, h, args), ylabel="mean squared error"
    )


def save_spiral(path, observed, fitted):
    plt = pyplot(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(*observed.T, label="observed")
    ax.plot(*fitted.T, "--", label="neural ODE from the first point")
    ax.legend()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

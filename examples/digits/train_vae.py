"""Train the VAE of vae.dfl on the training digits, report the test loss (negative ELBO, in
nats per image), write the loss curve and a row of test digits over their reconstructions as
PNGs; then the same model, from the same start on the same minibatches, in PyTorch (1 thread)
if it is installed (its noise is PyTorch's own).

    python examples/digits/train_vae.py [--epochs 60]
"""

import itertools
import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from data import digits  # noqa: E402
from support import compare, diffc_adam, parse_args, pyplot, torch_adam, train_loop  # noqa: E402


def init(rng, hidden=128, latent=8):
    def layer(n_in, n_out):
        return {"w": rng.normal(size=(n_in, n_out)) / np.sqrt(n_in), "b": np.zeros(n_out)}

    return {
        "e1": layer(64, hidden), "mu": layer(hidden, latent), "lv": layer(hidden, latent),
        "d1": layer(latent, hidden), "out": layer(hidden, 64),
    }  # fmt: skip


def train(name, step, test_loss, x, x_test, epochs, batch):
    rng = np.random.default_rng(1)

    def epoch(_):
        order = rng.permutation(len(x))
        return np.mean([step(x[order[i : i + batch]]) for i in range(0, len(x) - batch + 1, batch)])

    def progress(i, loss):
        return f"{name:8s} epoch {i:3d}  loss {loss:.2f}"

    curve, seconds = train_loop(epoch, range(epochs), 10, progress, window=1)
    print(f"{name:8s} test loss (negative ELBO) {test_loss(x_test):.2f} nats per image, trained in {seconds:.1f} s")
    return curve


def diffc_model(m, p, lr):
    state, adam = diffc_adam(m, p, lr)
    steps = itertools.count(1)

    def step(x):
        return adam(x, np.array([1, next(steps)]))  # the noise's key: a new one each step

    def test_loss(x):
        return np.mean([m.loss(state["p"], x, np.array([2, i])) for i in range(10)])

    return step, test_loss, state


def torch_model(torch, p, lr):
    w, adam = torch_adam(torch, p, lr)
    softplus = torch.nn.functional.softplus

    def dense(name, x):
        return x @ w[f"{name}.w"] + w[f"{name}.b"]

    def loss_of(x):
        h = torch.tanh(dense("e1", x))
        mu, logvar = dense("mu", h), dense("lv", h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = dense("out", torch.tanh(dense("d1", z)))
        kl = -0.5 * (1 + logvar - mu * mu - torch.exp(logvar)).sum()
        return ((softplus(logits) - logits * x).sum() + kl) / len(x)

    def step(x):
        return adam(loss_of(torch.tensor(x)))

    def test_loss(x):
        with torch.no_grad():
            return np.mean([loss_of(torch.tensor(x)).item() for _ in range(10)])

    return step, test_loss


def save_reconstructions(path, x, r):
    plt = pyplot(path)
    if plt is None:
        return
    fig, axes = plt.subplots(2, len(x), figsize=(len(x), 2.2))
    for i in range(len(x)):
        for row, img in enumerate((x[i], r[i])):
            axes[row, i].imshow(img.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            axes[row, i].axis("off")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"wrote {path}")


def main():
    args = parse_args(__doc__, epochs=60, batch=64, lr=2e-3, png="vae_loss.png")
    (x, _), (x_test, _) = digits()
    m = diffc.load(HERE / "vae.dfl")
    p = init(np.random.default_rng(0))
    step, test_loss, state = diffc_model(m, p, args.lr)
    curves = {"diffc": train("diffc", step, test_loss, x, x_test, args.epochs, args.batch)}
    pictures = args.png.replace("loss", "reconstructions")
    save_reconstructions(pictures, x_test[:10], m.reconstruct(state["p"], x_test[:10]))

    def train_torch(torch):
        torch.manual_seed(0)
        return train("PyTorch", *torch_model(torch, p, args.lr), x, x_test, args.epochs, args.batch)

    compare(args, curves, train_torch, ylabel="negative ELBO (nats per image)", xlabel="epoch")


if __name__ == "__main__":
    main()

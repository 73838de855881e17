"""Train the character-level GRU of char_rnn.dfl on the Declaration of Independence (public
domain, declaration.txt), printing the loss and a sample as it learns; then the same model,
from the same start on the same batches, in PyTorch (1 thread) if it is installed.

    python examples/text/train_char_rnn.py [--steps 600] [--png char_rnn_loss.png]
"""

import sys
from pathlib import Path

import numpy as np

import diffc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from support import compare, diffc_adam, parse_args, torch_adam, train_loop  # noqa: E402


def init(rng, vocab, embed, hidden):
    def w(*shape):
        return rng.normal(size=shape) / np.sqrt(shape[0])

    return {
        "emb": rng.normal(size=(vocab, embed)), "wx": w(embed, 3 * hidden), "wh": w(hidden, 3 * hidden),
        "bx": np.zeros(3 * hidden), "bh": np.zeros(3 * hidden), "wo": w(hidden, vocab), "bo": np.zeros(vocab),
    }  # fmt: skip


def train(name, step, sample, ids, decode, args):
    rng = np.random.default_rng(1)

    def fit(_):
        starts = rng.integers(0, len(ids) - args.length - 1, size=args.batch)
        windows = np.stack([ids[i : i + args.length + 1] for i in starts])
        return step(windows[:, :-1], windows[:, 1:])

    def progress(t, loss):
        text = decode(sample(ids[:12], t - 1)) if sample else ""  # sampled with the key of step t - 1
        return f"{name:8s} step {t:4d}  loss {loss:.3f}  {decode(ids[:12])}|{text!r}"

    losses, seconds = train_loop(fit, range(args.steps), 100, progress)
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    print(f"{name:8s} loss {first:.2f} -> {last:.2f} nats per character, trained in {seconds:.1f} s")
    return losses


def diffc_model(m, p, lr):
    state, step = diffc_adam(m, p, lr)

    def sample(prompt, t):
        return m.sample(state["p"], prompt, 60, np.array([0, t]), 0.7)

    return step, sample


def torch_model(torch, p, lr):
    """char_rnn.dfl's model and step (gradient clipped to norm 5, Adam) in PyTorch."""
    w, adam = torch_adam(torch, p, lr, clip_norm=5.0)
    n = len(p["bh"]) // 3

    def loss_of(xs, ys):
        h, logits = torch.zeros(len(xs), n), []
        for t in range(xs.shape[1]):
            gx, gh = w["emb"][xs[:, t]] @ w["wx"] + w["bx"], h @ w["wh"] + w["bh"]
            r = torch.sigmoid(gx[:, :n] + gh[:, :n])
            z = torch.sigmoid(gx[:, n : 2 * n] + gh[:, n : 2 * n])
            c = torch.tanh(gx[:, 2 * n :] + r * gh[:, 2 * n :])
            h = (1 - z) * c + z * h
            logits.append(h @ w["wo"] + w["bo"])
        return torch.nn.functional.cross_entropy(torch.stack(logits).reshape(-1, len(p["bo"])), ys.T.reshape(-1))

    def step(xs, ys):
        return adam(loss_of(torch.tensor(xs), torch.tensor(ys)))

    return step, None


def main():
    args = parse_args(__doc__, steps=600, batch=32, length=48, hidden=128, lr=3e-3, png="char_rnn_loss.png")
    text = (HERE / "declaration.txt").read_text()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.int64)

    def decode(seq):
        return "".join(chars[i] for i in seq)

    m = diffc.load(HERE / "char_rnn.dfl")
    p = init(np.random.default_rng(0), len(chars), 32, args.hidden)
    curves = {"diffc": train("diffc", *diffc_model(m, p, args.lr), ids, decode, args)}
    compare(
        args,
        curves,
        lambda torch: train("PyTorch", *torch_model(torch, p, args.lr), ids, decode, args),
        ylabel="loss per character (nats)",
    )


if __name__ == "__main__":
    main()

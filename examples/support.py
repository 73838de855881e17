"""What the training examples share: the command line, the training loop with its progress
lines and timing, Adam steps on a diffc model or on PyTorch tensors, PNGs (matplotlib, the
`examples` extra), and PyTorch at one thread for the side-by-side comparisons, when it is
installed. Each example puts this folder on its path."""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "digits"))  # data.py: the digits
sys.stdout.reconfigure(line_buffering=True)  # progress lines show as they come, through a pipe too


def torch_1thread():
    """PyTorch at one thread and float64 (as the examples' diffc models), or None (with a
    line saying so) when it is not installed."""
    try:
        import torch
    except ImportError:
        print("(PyTorch is not installed: no comparison)")
        return None
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    return torch


class Clock:
    """Seconds since it was made."""

    def __init__(self):
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def parse_args(doc: str, **options):
    """The command line of a training example: its docstring as the help, --OPTION for each
    keyword (typed like its default, in this order), then --no-torch."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in options.items():
        ap.add_argument(f"--{name}", type=type(default), default=default)
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    return ap.parse_args()


def train_loop(step, items, every, progress, window=None):
    """Calls `step(item) -> loss` for each item; after every `every` calls (none when 0) prints
    `progress(calls so far, mean loss of the last window calls)` (window: every). Returns the
    losses and the seconds the loop took."""
    clock, losses = Clock(), []
    for i, item in enumerate(items):
        losses.append(step(item))
        if every and (i + 1) % every == 0:
            print(progress(i + 1, np.mean(losses[-(window or every) :])))
    return losses, clock()


def diffc_adam(m, p, lr=None):
    """The training state {"p": params, "s": Adam state} of a diffc model and `step(*batch) ->
    loss`, which advances it by m.step(p, s, *batch, lr) -> (loss, p, s); without `lr`, the batch
    ends with the learning rate."""
    state = {"p": p, "s": m.adam_init(p)}
    rate = () if lr is None else (lr,)

    def step(*batch):
        loss, state["p"], state["s"] = m.step(state["p"], state["s"], *batch, *rate)
        return loss

    return state, step


def torch_params(torch, p):
    """Leaf tensors of a parameter record: {name: array}, or {layer: {name: array}} named
    "layer.name"."""
    if all(isinstance(layer, dict) for layer in p.values()):
        p = {f"{k}.{j}": v for k, layer in p.items() for j, v in layer.items()}
    return {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}


def torch_adam(torch, p, lr=1e-3, clip_norm=None):
    """PyTorch's side of diffc_adam: the tensors of `p` (torch_params) and `step(loss, rate=None)
    -> loss.item()`, one Adam step (at a new learning rate when given; the gradient clipped to
    norm `clip_norm` when given)."""
    w = torch_params(torch, p)
    opt = torch.optim.Adam(w.values(), lr=lr)

    def step(loss, rate=None):
        if rate is not None:
            for group in opt.param_groups:
                group["lr"] = rate
        opt.zero_grad()
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(w.values(), clip_norm)
        opt.step()
        return loss.item()

    return w, step


def compare(args, curves: dict, train_torch, **labels):
    """Adds PyTorch's curve, `train_torch(torch)` at one thread, to `curves` (unless --no-torch or
    PyTorch is missing) and saves them all as --png (labels: save_curve's)."""
    torch = None if args.no_torch else torch_1thread()
    if torch is not None:
        curves["PyTorch"] = train_torch(torch)
    save_curve(args.png, curves, **labels)


def pyplot(path):
    """matplotlib's pyplot (drawing to files), or None with a line saying `path` is not written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(matplotlib is not installed: no {path}; pip install -e '.[examples]')")
        return None
    return plt


def save_curve(path, curves: dict, ylabel: str = "training loss", xlabel: str = "step"):
    """A PNG of loss curves, {label: values}, on a log scale."""
    plt = pyplot(path)
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, ys in curves.items():
        ax.plot(ys, label=label, alpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")

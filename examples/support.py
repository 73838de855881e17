"""What the training examples share: PNGs (matplotlib, the `examples` extra), and PyTorch at
one thread for the side-by-side comparisons, when it is installed. Each example puts this
folder on its path."""

import sys
import time
from pathlib import Path

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

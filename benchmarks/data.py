"""The inputs of each workload, drawn exactly as ../shared/bench/WORKLOADS.md specifies, and
the reference values it lists. data(name) -> (params, inputs), lists in the workload's order."""

from __future__ import annotations

import numpy as np

NAMES = ["mlp_step", "rnn_scan", "lstm_scan", "softmax_xent", "ode_rk4", "conv_small", "attention", "while_newton"]

# loss, and the Euclidean norm of each parameter's gradient
REFERENCE = {
    "mlp_step": (2.39763055057, [2.28907551, 0.0623520534, 1.21860609, 0.0800997283]),
    "rnn_scan": (28.8515850263, [23.4708419, 30.0703828, 5.97982281]),
    "lstm_scan": (1.1836787746, [1.68505754, 0.690519406, 0.807356961]),
    "softmax_xent": (8.22267430773, [0.0159515524]),
    "ode_rk4": (0.135670143678, [0.978229849]),
    "conv_small": (2.95809746236, [0.714873776, 0.357523895, 2.82087873, 0.293428687]),
    "attention": (164.719489539, [158.095421, 185.29461, 157.839387]),
    "while_newton": (31.6227766017, [0.0158113883]),
}


def data(name: str):
    """(params, inputs) of a workload, as lists of NumPy arrays (or floats)."""
    if name == "mlp_step":
        rng = np.random.default_rng(1)
        X = rng.standard_normal((64, 784))
        y = rng.integers(0, 10, 64)
        W1 = rng.standard_normal((784, 256)) / np.sqrt(784)
        b1 = 0.1 * rng.standard_normal(256)
        W2 = rng.standard_normal((256, 10)) / np.sqrt(256)
        b2 = 0.1 * rng.standard_normal(10)
        return [W1, b1, W2, b2], [X, y]
    if name == "rnn_scan":
        rng = np.random.default_rng(2)
        xs = rng.standard_normal((200, 16))
        h0 = np.zeros(64)
        Wx = rng.standard_normal((16, 64)) / 4
        Wh = rng.standard_normal((64, 64)) / 8
        b = 0.1 * rng.standard_normal(64)
        return [Wx, Wh, b], [xs, h0]
    if name == "lstm_scan":
        rng = np.random.default_rng(3)
        xs = rng.standard_normal((100, 16))
        h0, c0 = np.zeros(32), np.zeros(32)
        W = rng.standard_normal((16, 128)) / 4
        U = rng.standard_normal((32, 128)) / np.sqrt(32)
        b = 0.1 * rng.standard_normal(128)
        return [W, U, b], [xs, h0, c0]
    if name == "softmax_xent":
        rng = np.random.default_rng(4)
        y = rng.integers(0, 512, 4096)
        Z = 2 * rng.standard_normal((4096, 512))
        return [Z], [y]
    if name == "ode_rk4":
        return [np.array([4.0, 0.3, 0.5])], [np.array([1.0, 0.0])]
    if name == "conv_small":
        rng = np.random.default_rng(6)
        X = rng.standard_normal((32, 1, 8, 8))
        y = rng.integers(0, 10, 32)
        K = rng.standard_normal((8, 1, 3, 3)) / 3
        bk = 0.1 * rng.standard_normal(8)
        Wd = rng.standard_normal((72, 10)) / np.sqrt(72)
        bd = 0.1 * rng.standard_normal(10)
        return [K, bk, Wd, bd], [X, y]
    if name == "attention":
        rng = np.random.default_rng(7)
        X = rng.standard_normal((64, 32))
        Wq = rng.standard_normal((32, 32)) / np.sqrt(32)
        Wk = rng.standard_normal((32, 32)) / np.sqrt(32)
        Wv = rng.standard_normal((32, 32)) / np.sqrt(32)
        return [Wq, Wk, Wv], [X]
    if name == "while_newton":
        return [1000.0], []
    raise KeyError(name)

"""scikit-learn's bundled 8x8 digits (1,797 images, no download), scaled to [0, 1] and split
into a training and a test set the same way every time."""

import numpy as np


def digits(test_fraction: float = 0.25, seed: int = 0):
    from sklearn.datasets import load_digits

    data = load_digits()
    x, y = data.data / 16.0, data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])

"""The digits example trains data-parallel on a local Ray cluster of two workers; the gradient
a worker computes with an unpickled function is the one computed here."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import diffc

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")
pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[ray]')")

DIGITS = Path(__file__).parents[2] / "examples" / "digits"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def example():
    sys.path.insert(0, str(DIGITS))
    try:
        spec = importlib.util.spec_from_file_location("train_ray", DIGITS / "train_ray.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(DIGITS))


def test_a_worker_computes_the_same_gradient(cluster):
    m = diffc.load(DIGITS / "mlp.dfl")
    vg = diffc.value_and_grad(m.loss)
    p = m.init(np.array([0, 3]))
    x, y = np.random.default_rng(0).random((5, 64)), np.array([0, 3, 9, 3, 1])

    @ray.remote
    def remote(f, *args):
        return f(*args)

    loss, g = ray.get(remote.remote(vg, p, x, y))
    want_loss, want_g = vg(p, x, y)
    assert loss == want_loss
    for name in want_g:
        np.testing.assert_array_equal(g[name], want_g[name])


def test_the_digits_mlp_trains_on_two_workers(cluster, example, capsys):
    _, losses, accuracy, _ = example.train(workers=2, steps=600, log_every=300)
    assert np.mean(losses[-50:]) < 0.25 * np.mean(losses[:50])
    assert accuracy >= 0.95
    assert "step  600" in capsys.readouterr().out

"""The training examples run from a fresh checkout and reach what docs/examples.md states:
the quick ones at full length, the long ones shortened to show that they learn. Each runs as
a user would run it, in a subprocess, without PyTorch's comparison."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"


def run(script, *args, cwd):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--no-torch", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def number(pattern, text):
    return float(re.search(pattern, text).group(1))


@pytest.fixture
def digits_data():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[examples]')")


def test_the_digits_mlp_reaches_97_percent_driven_from_python_and_inside_dfl(digits_data, tmp_path):
    out = run("digits/train_mlp.py", cwd=tmp_path)
    assert number(r"diffc +test accuracy ([\d.]+)", out) >= 0.97
    assert number(r"loop in DFL: test accuracy ([\d.]+)", out) >= 0.97


def test_the_digits_convnet_reaches_98_percent(digits_data, tmp_path):
    out = run("digits/train_convnet.py", cwd=tmp_path)
    assert number(r"diffc +test accuracy ([\d.]+)", out) >= 0.98


def test_the_vae_learns_the_digits(digits_data, tmp_path):
    out = run("digits/train_vae.py", "--epochs", "20", cwd=tmp_path)
    assert number(r"test loss \(negative ELBO\) ([\d.]+)", out) < 30.0


def test_the_neural_stack_reverses_longer_sequences_than_it_was_trained_on(tmp_path):
    out = run("stack/train_reverse.py", cwd=tmp_path)
    assert number(r"length 16: ([\d.]+) of symbols", out) >= 0.99
    assert number(r"length 32: ([\d.]+) of symbols", out) >= 0.95


def test_the_recursive_net_evaluates_deeper_formulas_than_it_was_trained_on(tmp_path):
    out = run("trees/train_logic.py", cwd=tmp_path)
    assert number(r"depth 8: accuracy ([\d.]+)", out) >= 0.95


def test_the_neural_ode_learns(tmp_path):
    out = run("ode/fit.py", "--steps", "2000", cwd=tmp_path)
    losses = [float(x) for x in re.findall(r"loss ([\d.e+-]+)", out)]
    assert losses[-1] < 0.1 * losses[0]


def test_the_char_rnn_learns_and_samples(tmp_path):
    out = run("text/train_char_rnn.py", "--steps", "200", "--hidden", "64", cwd=tmp_path)
    first, last = (number(p, out) for p in (r"loss ([\d.]+) ->", r"-> ([\d.]+) nats"))
    assert last < 0.6 * first
    assert re.search(r"step  200 .*\|'.+'", out)  # a sample of text after the prompt

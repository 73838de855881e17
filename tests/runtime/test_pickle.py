"""Compiled functions pickle as their program's text, name and transform: an unpickled one
gives the same values, reads no file, keeps its error locations, and on the same machine loads
its machine code from the disk cache instead of compiling."""

import pickle
import subprocess
import sys

import numpy as np
import pytest

import diffc

LIB = "fn sq(x) = x * x\n"
PROG = """import lib
import nn
fn loss(w, x) = sum(lib.sq(w @ x)) + nn.mse(x, 2.0 * x)
fn pick(x, i) = x[i]
"""


@pytest.fixture
def program(tmp_path):
    (tmp_path / "lib.dfl").write_text(LIB)
    (tmp_path / "prog.dfl").write_text(PROG)
    return diffc.load(tmp_path / "prog.dfl"), tmp_path


W, X = np.arange(6.0).reshape(2, 3), np.array([1.0, -2.0, 0.5])


def assert_same(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        np.testing.assert_array_equal(a, b)


def test_functions_and_their_derivatives_round_trip(program):
    m, _ = program
    fns = [m.loss, diffc.grad(m.loss), diffc.value_and_grad(m.loss, (0, 1)), m.grad("loss", 1)]
    for f in fns:
        g = pickle.loads(pickle.dumps(f))
        assert g.label == f.label
        assert_same(g(W, X), f(W, X))


def test_a_module_pickles_once_for_all_its_functions(program):
    m, _ = program
    f, g = pickle.loads(pickle.dumps((m.loss, diffc.grad(m.loss))))
    assert f.module is g.module
    assert pickle.loads(pickle.dumps(m)).loss(W, X) == m.loss(W, X)


def test_the_unpickled_program_reads_no_file(program):
    m, folder = program
    data = pickle.dumps(m.loss)
    (folder / "lib.dfl").unlink()
    (folder / "prog.dfl").unlink()
    assert pickle.loads(data)(W, X) == m.loss(W, X)


def test_errors_of_an_unpickled_function_are_located_in_the_original_file(program):
    m, folder = program
    pick = pickle.loads(pickle.dumps(m.pick))
    with pytest.raises(diffc.BoundsError) as e:
        pick(X, 7)
    assert str(e.value).startswith(f"{folder / 'prog.dfl'}:4:")
    assert "x[i]" in str(e.value)


def test_another_process_loads_the_machine_code_from_the_disk_cache(program, tmp_path, monkeypatch):
    m, _ = program
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("DIFFC_CACHE_DIR", str(cache))
    monkeypatch.delenv("DIFFC_CACHE", raising=False)
    g = diffc.grad(m.loss)
    g(W, X)  # compiled here, and written to the cache
    entries = set(cache.glob("*.bin"))
    assert entries
    (tmp_path / "g.pickle").write_bytes(pickle.dumps(g))
    code = (
        "import pickle, numpy as np\n"
        f"g = pickle.loads(open({str(tmp_path / 'g.pickle')!r}, 'rb').read())\n"
        "print(repr(g(np.arange(6.0).reshape(2, 3), np.array([1.0, -2.0, 0.5])).tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert eval(out.stdout) == g(W, X).tolist()
    assert set(cache.glob("*.bin")) == entries  # nothing new compiled: every entry came from the cache

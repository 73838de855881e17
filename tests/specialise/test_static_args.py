"""Static arguments (Note [Static arguments] in diffc/specialise/trace.py): an int or bool
argument of the entry function that tracing needs at compile time (a shape, a trip count, an
axis, a branch of another shape) is specialised on its value; the others stay run-time values."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from support.native import module

import diffc
from diffc.errors import TypeError_
from diffc.pipeline import to_ir_static
from diffc.pytree import unflatten
from diffc.runtime import cache
from diffc.runtime.values import flatten_args, type_of
from diffc.specialise import static_text

SOURCE = """
fn init(k, n) = normal(k, [n, 3])
fn zs(n, m) = zeros([n, 2]) + m
fn main() = init(key(0), 4)
fn pick(flag, x) = if flag { x } else { concat(x, x) }
fn total(x, a) = sum(x, axis=a)
fn evens(n) = for i in 0..n => i * 2
fn at(x, i) = x[i] * 2.0
fn sized(c) = zeros([c.n, c.m])
fn from_array(x) = zeros([x[0], 2])
fn from_float(x) = zeros([i64(x), 2])
fn loss(w, n) = sum(zeros([n]) + w * w)
"""


def signature_of(fn: str, *args) -> str:
    """Which arguments `fn` takes as compile-time values for these arguments, as `diffc show` says."""
    m = module(SOURCE)
    arrays, tree = flatten_args(args)
    types = unflatten(tree, [type_of(a) for a in arrays])
    _, _, sig = to_ir_static(m.ast, fn, types, values=arrays)
    return static_text([p.name for p in m.ast.fns[fn].params], sig)


def test_a_size_from_an_int_argument_is_taken_at_compile_time():
    m = module(SOURCE)
    assert m.zs(3, 1.5).shape == (3, 2)
    assert m.zs(2, 7.0).tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert signature_of("zs", 3, 1.5) == "n=3"


def test_a_dfl_caller_passes_a_literal_size():
    assert module(SOURCE).main().shape == (4, 3)


def test_an_int_given_a_key_makes_random_arrays_of_its_size():
    m = module(SOURCE)
    k = m.evaluate("key(1)")
    assert m.init(k, 5).shape == (5, 3)
    assert m.init(k, 2).shape == (2, 3)


def test_each_value_compiles_once_and_a_run_time_int_does_not_recompile():
    m = diffc.compile(SOURCE)  # (its own Function objects: counts start at zero)
    for n in (3, 2, 3, 2):
        assert m.evens(n).tolist() == [2 * i for i in range(n)]
    assert m.evens.num_compiled == 2
    x = np.arange(5.0)
    assert [m.at(x, i) for i in range(5)] == [2.0 * i for i in range(5)]
    assert m.at.num_compiled == 1
    assert signature_of("at", x, 1) == ""


def test_a_bool_argument_chooses_branches_of_different_shapes():
    m = module(SOURCE)
    assert m.pick(True, np.ones(2)).shape == (2,)
    assert m.pick(False, np.ones(2)).shape == (4,)
    assert signature_of("pick", False, np.ones(2)) == "flag=false"


def test_an_axis_from_an_argument():
    m = module(SOURCE)
    x = np.arange(6.0).reshape(2, 3)
    assert m.total(x, 0).tolist() == x.sum(0).tolist()
    assert m.total(x, 1).tolist() == x.sum(1).tolist()
    assert m.total(x, -1).tolist() == x.sum(1).tolist()


def test_an_int_inside_a_record_argument():
    m = module(SOURCE)
    assert m.sized({"n": 2, "m": 3}).shape == (2, 3)
    assert signature_of("sized", {"n": 2, "m": 3}) == "c.m=3, c.n=2"


@pytest.mark.parametrize(
    ("fn", "arg", "names"),
    [("from_array", np.array([2]), "`x`"), ("from_float", 2.0, "`x`")],
)
def test_an_array_or_a_float_never_becomes_static(fn, arg, names):
    with pytest.raises(TypeError_) as e:
        getattr(module(SOURCE), fn)(arg)
    message = e.value.message
    assert f"comes from the argument {names}, a run-time value" in message
    assert "pass the size as an int argument" in message and "len(x)" in message
    line = next(k for k, text in enumerate(SOURCE.splitlines(), 1) if text.startswith(f"fn {fn}("))
    assert e.value.span.line == line


def test_without_values_a_size_argument_is_a_located_error():
    m = module(SOURCE)
    types = (type_of(np.asarray(3)), type_of(np.asarray(1.0)))
    with pytest.raises(TypeError_, match="comes from the argument `n`"):
        to_ir_static(m.ast, "zs", types)


def test_the_cache_key_differs_per_static_value(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("DIFFC_CACHE", raising=False)
    m = diffc.compile(SOURCE)
    m.zs(3, 1.0)
    m.zs(4, 1.0)
    m.zs(3, 2.0)  # (another run-time value of m: no new entry)
    # one entry says which arguments are static for the types (int, float), one per value of n
    assert len(cache.entries(tmp_path)) == 3
    again = diffc.compile(SOURCE)  # a new process would find them: no compile, same values
    assert again.zs(4, 5.0).shape == (4, 2)
    assert len(cache.entries(tmp_path)) == 3


def test_grad_and_value_and_grad_with_a_static_int():
    m = module(SOURCE)
    g = diffc.grad(m.loss)(1.5, 4)
    assert g == pytest.approx(4 * 2 * 1.5)
    v, g = diffc.value_and_grad(m.loss)(2.0, 3)
    assert (v, g) == (pytest.approx(12.0), pytest.approx(12.0))


def run_cli(*argv, tmp_path):
    path = tmp_path / "p.dfl"
    path.write_text(SOURCE)
    command = [sys.executable, "-m", "diffc", *argv[:1], str(path), *argv[1:]]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "DIFFC_CACHE": "0"})


def test_cli_run_show_and_gradcheck_take_an_int_as_a_size(tmp_path):
    r = run_cli("run", "--entry", "zs", "--arg", "n=2", "--arg", "m=1.5", tmp_path=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[[1.5, 1.5], [1.5, 1.5]]", r.stderr
    r = run_cli("run", "--entry", "init", "--arg", "k=key(0)", "--arg", "n=2", tmp_path=tmp_path)
    assert r.returncode == 0 and r.stdout.count("[") == 3, r.stderr
    r = run_cli("show", "--entry", "zs", "--arg", "n=2", "--arg", "m=1.5", tmp_path=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("# static arguments (compiled for these values): n=2\n")
    r = run_cli("gradcheck", "--fn", "loss", "--arg", "n=3", "--arg", "w=0.5", tmp_path=tmp_path)
    assert r.returncode == 0 and "agree" in r.stdout, r.stdout + r.stderr


def test_cli_an_array_size_is_a_located_error(tmp_path):
    r = run_cli("run", "--entry", "from_array", "--arg", "x=[2]", tmp_path=tmp_path)
    assert r.returncode == 1 and "p.dfl:10:" in r.stderr and "comes from the argument `x`" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_signatures_of_a_function_show_its_static_values():
    m = diffc.compile(SOURCE)
    assert repr(m.zs) == "<diffc function zs>"
    m.zs(3, 1.0)
    m.zs(4, 1.0)
    m.sized({"n": 2, "m": 1})
    assert m.zs.signatures() == ["(n=3, m: f64)", "(n=4, m: f64)"]
    assert repr(m.sized) == "<diffc function sized compiled for (c.m=1, c.n=2)>"
    m.at(np.ones(2), 1)
    assert m.at.signatures() == ["(x: f64[2], i: i64)"]

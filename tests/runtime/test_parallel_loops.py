"""Parallel loops (See Note [Parallel loops] in lower/emit.py): the same results on 1, 2 and 3
threads for every kind of loop that is split (elementwise, broadcast, transposed tiles, rows of
a reduction, blocks of a reduction to one number, a map's rows with temporaries, products and
inner maps), loops that may fail kept
whole and still located, calls from many Python threads at once, a forked child, and how the
count is chosen (DIFFC_THREADS, --threads, diffc.set_threads)."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from support.native import in_threads, ir_of, on_each_count, restore_threads  # noqa: F401 (a fixture)

import diffc
from diffc.lower import jit
from diffc.lower.emit import ARENA_SCRATCH_MAX, PARALLEL_MIN, PARALLEL_SYMBOL, SCRATCH_MAX
from diffc.lower.llvm import lower_program

SRC = """
fn chain(x) = exp(tanh(x)) * sigmoid(x) + log1p(x * x)
fn chain32(x) = exp(tanh(x)) * sigmoid(x)
fn bcast(x, v) = x * v + 1.0
fn cube(x) = x ** 3
fn flip(x) = transpose(x) * 2.0 + 1.0
fn flip3(x) = transpose(x, [0, 2, 1]) * 2.0
fn rowsum(x) = sum(exp(x), axis=1)
fn rowmax(x) = max(x, axis=1)
fn rows(x) = map(fn(r) => sum(exp(r)) + max(r), x)
fn scaled(x) = map(fn(r) => r / sum(r * r), x)
fn product_rows(x, w) = map(fn(r) => tanh(r @ w), x)
fn nested(x) = map(fn(r) => map(fn(v) => v * v + 1.0, r), x)
fn ints(k) = k * 3 + 1
fn flags(x) = x > 0.5
fn loss(x) = sum(exp(tanh(x)) * x)
fn total(x) = sum(exp(tanh(x)) * x)
fn largest(x) = max(x)
fn smallest(x) = min(transpose(x))
fn itotal(k) = sum(k)
fn gather(x, ids) = map(fn(i) => x[i] * 2.0, ids)
fn product(a, b) = a @ b
fn product_t(a, b) = transpose(a) @ transpose(b)
"""

N = PARALLEL_MIN * 2  # elements: enough for a split


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


def _cases():
    rng = np.random.default_rng(0)
    big = rng.standard_normal(N)
    big[:5] = [0.0, -0.0, np.inf, -np.inf, np.nan]
    mat = rng.standard_normal((512, 300))
    mat[3, 7] = np.nan
    return {
        "chain": (big,),
        "chain32": (big.astype(np.float32),),
        "bcast": (rng.standard_normal((400, 300)), rng.standard_normal(300)),
        "cube": (big,),
        "flip": (rng.standard_normal((400, 300)),),
        "flip3": (rng.standard_normal((3, 300, 200)),),
        "rowsum": (mat,),
        "rowmax": (mat,),
        "rows": (mat,),
        "scaled": (mat,),
        "product_rows": (mat[:, :64].copy(), rng.standard_normal((64, 64))),
        "nested": (mat,),
        "ints": (rng.integers(-(2**62), 2**62, N),),
        "flags": (rng.random(N),),
        "total": (big,),
        "product": (rng.standard_normal((300, 200)), rng.standard_normal((200, 100))),  # rows
        "product_t": (rng.standard_normal((200, 40)), rng.standard_normal((700, 200))),  # columns
        "largest": (big,),
        "smallest": (mat,),
        "itotal": (rng.integers(-(2**62), 2**62, N),),
    }


EXPECTED = {
    "chain": lambda x: np.exp(np.tanh(x)) / (1 + np.exp(-x)) + np.log1p(x * x),
    "cube": lambda x: x**3,
    "flip": lambda x: x.T * 2.0 + 1.0,
    "rowsum": lambda x: np.exp(x).sum(1),
    "rowmax": lambda x: x.max(1),
    "rows": lambda x: np.exp(x).sum(1) + x.max(1),
    "nested": lambda x: x * x + 1.0,
    "ints": lambda k: k * 3 + 1,
    "flags": lambda x: x > 0.5,
    "largest": np.max,
    "smallest": np.min,
    "itotal": np.sum,
    "product": np.matmul,
    "product_t": lambda a, b: a.T @ b.T,
}


def test_a_reduction_to_one_number_sees_every_block():
    m = diffc.compile("fn total(x) = sum(x)\nfn largest(x) = max(x)")
    x = np.random.default_rng(3).standard_normal(N + 7)
    assert m.total(x) == pytest.approx(x.sum(), rel=1e-12)
    for k in (0, N // 2, N + 6):  # the first block, a middle one, the last (shorter) one
        y = x.copy()
        y[k] = 1e300
        assert m.largest(y) == 1e300
        y[k] = np.nan
        assert np.isnan(m.largest(y)) and np.isnan(m.total(y))


@pytest.mark.parametrize("name", sorted(_cases()))
def test_same_results_on_any_number_of_threads(m, name):
    args = _cases()[name]
    results = on_each_count(lambda: getattr(m, name)(*args))
    for r in results[1:]:
        assert np.array_equal(r, results[0], equal_nan=True)
    if name in EXPECTED:
        np.testing.assert_allclose(results[0], EXPECTED[name](*args), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("name", sorted(_cases()))
def test_the_big_loops_are_split(m, name):
    assert PARALLEL_SYMBOL in _llvm(m, name, *_cases()[name])


def test_small_loops_are_not_split(m):
    assert PARALLEL_SYMBOL not in _llvm(m, "chain", np.ones(PARALLEL_MIN // 64))


def test_gradients_agree(m):
    x = np.random.default_rng(1).standard_normal(N)
    grads = on_each_count(lambda: diffc.grad(m.loss)(x), (1, 3))
    assert np.array_equal(grads[0], grads[1])
    t = np.tanh(x)
    np.testing.assert_allclose(grads[0], np.exp(t) * (1 - t * t) * x + np.exp(t), rtol=1e-12)


def test_a_value_of_the_enclosing_loop_read_inside_and_after_a_split_loop():
    """A map's row computes a number (an empty sum, here) from a slot of its frame; a split
    loop inside the row reads it, and so does code after that loop."""
    m = diffc.compile("import nn\nfn f(s, mask) = map(fn(r) => nn.masked_softmax(r, mask), s)")
    s = np.random.default_rng(4).standard_normal((32, 128, 128))
    mask = np.tril(np.ones((128, 128), bool))
    e = np.where(mask, np.exp(s - np.where(mask, s, -np.inf).max(-1, keepdims=True)), 0.0)
    np.testing.assert_allclose(m.f(s, mask), e / e.sum(-1, keepdims=True), rtol=1e-12, atol=1e-15)


def test_rows_with_temporaries_beyond_a_threads_stack_take_a_place_per_row_in_the_arena():
    """A map whose rows need more temporaries than SCRATCH_MAX (attention's scores, a row of
    [t, t] each) runs on the threads, each row's temporaries at a place of its own in the
    arena, while all of them fit ARENA_SCRATCH_MAX; beyond, it runs on one thread. The
    same bits on 1, 2 and 3 threads, and NumPy's values, NaN and inf included."""
    m = diffc.compile(
        "fn f(q, k) = map(fn(a, b) => row(a @ transpose(b)), q, k)\nfn row(s) = sum(exp(s) * 0.5, axis=1) + sum(s)"
    )
    rng = np.random.default_rng(5)
    q, k = (rng.standard_normal((3, 16, 160, 8)) * 0.1 for _ in range(2))
    q[1, 3, 0], q[2, 7, 1] = np.nan, np.inf
    with np.errstate(invalid="ignore"):
        s = q @ np.swapaxes(k, -1, -2)
        want = (np.exp(s) * 0.5).sum(-1) + s.sum((-2, -1))[..., None]
    row_bytes = 160 * 160 * 8  # (one row's scores alone)
    assert row_bytes > SCRATCH_MAX and 16 * row_bytes * 3 <= ARENA_SCRATCH_MAX
    assert _rows_on_threads(_llvm(m, "f", q[0], k[0]), 16)
    results = on_each_count(lambda: [m.f(q[j], k[j]) for j in range(3)])
    for r in results[1:]:
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(r, results[0]))
    np.testing.assert_allclose(np.array(results[0]), want, rtol=1e-12, equal_nan=True)
    big = rng.standard_normal((4, 1500, 8))  # 4 rows of 18 MB of scores: beyond the arena's budget
    assert 4 * 1500 * 1500 * 8 > ARENA_SCRATCH_MAX
    assert not _rows_on_threads(_llvm(m, "f", big, big), 4)


def _rows_on_threads(text: str, rows: int) -> bool:
    """Whether lowered code runs a parallel loop over `rows` iterations (a map's rows)."""
    return re.search(rf'call void @"{PARALLEL_SYMBOL}"\([^\n]*, i64 {rows}, i64 \d+\)', text) is not None


def test_values_made_of_constants_are_made_again_in_each_piece():
    """A value computed from constants alone (the exponent 2 of `x ** 2` converted to 2.0,
    and `y - 1.0` of its derivative) is computed again in a piece rather than passed in its
    env, so LLVM sees a constant there: x * x, not a call of pow per element (150 times
    slower). The values on 1, 2 and 3 threads, NaN and inf included."""
    m = diffc.compile("fn f(x) = sum(x ** 2)\nfn g(x) = x ** 2 - x")
    x = np.random.default_rng(4).standard_normal(N)
    x[:3] = [np.nan, np.inf, -0.0]
    for fn in ("f", "g"):
        text = str(jit.optimise(_llvm(m, fn, x)))
        assert PARALLEL_SYMBOL in text and "pow" not in text
    grad = diffc.grad(m.f)
    for total, values, dx in on_each_count(lambda: (m.f(x), m.g(x), grad(x))):
        assert np.isnan(total)
        with np.errstate(invalid="ignore"):
            np.testing.assert_array_equal(values, x**2 - x)
        np.testing.assert_array_equal(dx, 2 * x)


def test_a_map_with_long_rows_is_split_and_still_checks_for_ctrl_c(m):
    """A map whose rows are long checks for Ctrl-C in each row: on the threads, a piece that
    sees it stops and the call then fails as one interrupted call."""
    text = _llvm(m, "scaled", np.ones((512, 3000)))
    pieces = text.split('define internal void @"dfl.main.par"')[1].split("\ndefine ")[0]
    assert "diffc_sigints" in pieces


def test_a_loop_that_can_fail_stays_whole_and_located(m):
    x = np.arange(10.0)
    ids = np.zeros(N, dtype=np.int64)
    assert PARALLEL_SYMBOL not in _llvm(m, "gather", x, ids)
    ids[N - 3] = 10
    diffc.set_threads(2)
    with pytest.raises(diffc.BoundsError, match="out of bounds"):
        m.gather(x, ids)


def test_calls_from_many_python_threads(m):
    diffc.set_threads(2)
    x = np.random.default_rng(2).standard_normal(N)
    expected = m.chain(x)
    failures = []

    def hammer():
        for _ in range(30):
            if not np.array_equal(m.chain(x), expected, equal_nan=True):
                failures.append(1)

    in_threads(hammer, [()] * 4)
    assert not failures


def test_set_threads_checks_its_argument():
    with pytest.raises(diffc.UsageError, match="at least 1"):
        diffc.set_threads(0)
    assert diffc.set_threads(2) == 2
    assert diffc.get_threads() == 2


def test_a_forked_child_runs_parallel_loops(tmp_path):
    script = tmp_path / "fork.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, numpy as np, diffc
        m = diffc.compile("fn f(x) = exp(x) * 2.0")
        x = np.linspace(-1, 1, {N})
        diffc.set_threads(2)
        expected = m.f(x)
        pid = os.fork()
        if pid == 0:
            ok = np.array_equal(m.f(x), expected) and np.array_equal(diffc.compile("fn g(x) = x + 1.0").g(x), x + 1)
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """)
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0"


def _run(tmp_path, *argv, env=None):
    prog = tmp_path / "p.dfl"
    prog.write_text(f"fn main() = sum(sum(exp(reshape(arange({N}) * 1.0e-6, [512, -1])), axis=1))\n")
    return subprocess.run(
        [sys.executable, "-m", "diffc", "run", str(prog), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_the_count_from_the_command_line(tmp_path):
    one, two = _run(tmp_path, "--threads", "1"), _run(tmp_path, "--threads", "2")
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout
    bad = _run(tmp_path, "--threads", "0")
    assert bad.returncode == 2 and "--threads must be at least 1" in bad.stderr


def test_a_bad_diffc_threads_is_a_usage_error(tmp_path):
    run = _run(tmp_path, env={"DIFFC_THREADS": "lots", "DIFFC_CACHE": "0"})
    assert run.returncode == 2
    assert "DIFFC_THREADS must be a whole number" in run.stderr


def _llvm(m, fn, *args) -> str:
    return str(lower_program(ir_of(m, fn, *args)).module)

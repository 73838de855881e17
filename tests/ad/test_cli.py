"""Derivatives from the command line: `diffc gradcheck` and `diffc show --grad`, and the
mistakes a user can make with the differentiation built-ins, each reported as a DiffcError at
the line of the call (exit status 1, `file:line:col`), never as an internal error."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import diffc
from diffc import cli

from .fd import numerical_grad

OK, MISMATCH = 0, 1


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `diffc argv...`, in process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "internal error" not in out + err
    return code, out, err


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


# --- gradcheck ------------------------------------------------------------------------------------

GOOD = {
    "dense": ("fn loss(w: f64[2, 3], b: f64[2], x: f64[3]) = sum(tanh(w @ x + b) ** 2)", []),
    "rnn": (
        """
        fn loss(wh: f64[3, 3], wx: f64[3, 2], xs: f64[5, 2]) {
            let (h, ys) = scan(fn(h, x) { let h2 = tanh(wh @ h + wx @ x); (h2, sum(h2 * h2)) }, zeros([3]), xs);
            sum(h) + sum(ys)
        }""",
        [],
    ),
    "vector-result": ("fn f(x: f64[3], y: f64[3]) = {a: sin(x) * y, b: (x @ y, exp(x))}", []),
    "while-and-int-argument": (
        """
        fn f(x: f64[3], n) {
            let (v, k) = while(fn(s) => s.1 < n, fn(s) => (sin(s.0) * x + s.0, s.1 + 1), (x, 0));
            sum(v * v)
        }""",
        ["--arg", "n=4"],
    ),
    "recursion": (
        """
        fn pw(x, n) = if n == 0 { x } else { sin(pw(x, n - 1)) * x }
        fn f(x: f64[2], n) = sum(pw(x, n))
        """,
        ["--arg", "n=3"],
    ),
    "custom-vjp": (
        """
        fn f(x: f64[3]) = sum(custom_vjp(fn(x) => sin(x), fn(x) => (sin(x), cos(x)), fn(r, ct) => (ct * r,))(x))
        """,
        [],
    ),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_gradcheck_passes(name, tmp_path, capsys):
    src, extra = GOOD[name]
    fn = re.findall(r"^\s*fn (\w+)", textwrap.dedent(src), re.M)[-1]
    p = write(tmp_path, f"{name}.dfl", src)
    code, out, err = run(capsys, "gradcheck", p, "--fn", fn, *extra)
    assert code == OK, out + err
    assert "MISMATCH" not in out
    assert f"{fn}: all derivatives agree with finite differences" in out
    assert re.search(r"^jvp ", out, re.M) and re.search(r"^vjp ", out, re.M)


WRONG_BWD = """
fn f(x: f64[3]) {
    # the bwd of sin says sin, not cos
    let g = custom_vjp(fn(x) => sin(x), fn(x) => (sin(x), sin(x)), fn(r, ct) => (ct * r,));
    sum(g(x) * x)
}
"""


def test_gradcheck_fails_on_a_wrong_custom_vjp(tmp_path, capsys):
    p = write(tmp_path, "wrong.dfl", WRONG_BWD)
    code, out, err = run(capsys, "gradcheck", p, "--fn", "f")
    assert code == MISMATCH
    assert "f: MISMATCH" in out
    assert re.search(r"^grad .*MISMATCH", out, re.M) and re.search(r"^vjp .*MISMATCH", out, re.M)
    # jvp differentiates fun itself, so it agrees; the report says which check failed
    assert re.search(r"^jvp .*ok$", out, re.M)


def test_gradcheck_exit_status_from_a_shell(tmp_path):
    p = write(tmp_path, "wrong.dfl", WRONG_BWD)
    r = subprocess.run(
        [sys.executable, "-m", "diffc", "gradcheck", str(p), "--fn", "f"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == MISMATCH, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


def test_gradcheck_needs_float_arguments(tmp_path, capsys):
    p = write(tmp_path, "ints.dfl", "fn f(n: i64[3]) = sum(n * n)")
    code, out, err = run(capsys, "gradcheck", p, "--fn", "f")
    assert code == 2 and "no float arguments" in err


# --- show --grad ----------------------------------------------------------------------------------

T = 7
SHOW = f"""
fn loss(w: f64[3, 3], xs: f64[{T}, 3]) {{
    let (h, ys) = scan(fn(h, x) {{ let h2 = tanh(w @ h + x); (h2, sum(h2)) }}, zeros([3]), xs);
    sum(h) + sum(ys)
}}
fn until(x: f64[3]) {{
    let (v, t) = while(fn(s) => s.1 < 5.0, fn(s) => (sin(s.0) + s.0, s.1 + 1.0 + sum(s.0 * s.0)), (x, 0.0));
    sum(v) * t
}}
"""


def test_show_grad_of_a_scan_notes_its_tape_of_T_iterations(tmp_path, capsys):
    p = write(tmp_path, "show.dfl", SHOW)
    code, out, err = run(capsys, "show", "--grad", "loss", p)
    assert code == OK, err
    forward, _, backward = out.partition("reverse=True")
    assert re.search(r"scan\[length=7.*reverse=False", forward)
    notes = [ln for ln in out.splitlines() if "tape:" in ln]
    assert len(notes) == 1 and f"x {T} iterations" in notes[0], notes
    assert "# line 2" in out  # the equations carry their source lines


CONV = """
fn loss(k: f64[3, 3], x: f64[6, 6]) {
    let o = for i in 0..4, j in 0..4 => sum(for a in 0..3, b in 0..3 => x[i + a, j + b] * k[a, b]);
    sum(o * o)
}
"""


def test_a_comprehension_recomputes_its_loads_and_indices_instead_of_taping_them(tmp_path, capsys):
    p = write(tmp_path, "conv.dfl", CONV)
    code, out, err = run(capsys, "show", "--grad", "loss", p)
    assert code == OK, err
    notes = [ln for ln in out.splitlines() if "tape:" in ln]
    assert notes and all("0 residuals per iteration" in ln for ln in notes), notes
    m = diffc.load(p)
    rng = np.random.default_rng(0)
    k, x = rng.standard_normal((3, 3)), rng.standard_normal((6, 6))
    gk, gx = diffc.grad(m.loss, (0, 1))(k, x)
    want_k, want_x = numerical_grad(m.loss, (k, x), (0, 1))
    np.testing.assert_allclose(gk, want_k, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gx, want_x, rtol=1e-6, atol=1e-8)


def test_show_grad_of_a_while_loop_tapes_with_while_tape(tmp_path, capsys):
    p = write(tmp_path, "show.dfl", SHOW)
    code, out, err = run(capsys, "show", "--grad", "until", p)
    assert code == OK, err
    lines = out.splitlines()
    fwd = next(k for k, ln in enumerate(lines) if "while_tape[" in ln)
    bwd = next(k for k, ln in enumerate(lines) if "while_untape[" in ln)
    assert fwd < bwd
    assert "tape that doubles" in lines[fwd + 1]
    assert not any(re.search(r"= while\[", ln) for ln in lines)  # the forward loop is the taping one


# --- mistakes -------------------------------------------------------------------------------------

# (program, the line of the culprit call, a phrase of the message)
MISTAKES = {
    "grad-of-non-scalar": (
        """
        fn f(x) = x * 2.0
        fn main() {
            let x = [1.0, 2.0];
            grad(f)(x)
        }""",
        4,
        "returns a float scalar",
    ),
    "grad-wrt-i64": (
        """
        fn f(x, n) = x * f64(n)
        fn main() {
            let x = 1.0;
            grad(f, 1)(x, 3)
        }""",
        4,
        "only float values have derivatives",
    ),
    "value-and-grad-wrt-i64-in-tuple": (
        """
        fn f(x, n) = x * f64(n)
        fn main() = value_and_grad(f, (0, 1))(1.0, 3)
        """,
        2,
        "only float values have derivatives",
    ),
    "jvp-tangent-shape": (
        """
        fn f(x) = sin(x)
        fn main() {
            let x = [1.0, 2.0];
            jvp(f, (x,), ([1.0, 2.0, 3.0],))
        }""",
        4,
        "tangent of argument 0 must be shaped like",
    ),
    "vjp-cotangent-shape": (
        """
        fn f(x) = sin(x)
        fn main() {
            let (y, pb) = vjp(f, [1.0, 2.0]);
            pb([1.0, 2.0, 3.0])
        }""",
        4,
        "cotangent must be shaped like",
    ),
    "custom-vjp-bwd-not-a-tuple": (
        """
        fn sq(x) = x * x
        fn sq_fwd(x) = (x * x, x)
        fn sq_bwd(r, ct) = 2.0 * r * ct
        fn main() {
            let g = custom_vjp(sq, sq_fwd, sq_bwd);
            grad(g)(3.0)
        }""",
        5,
        "one cotangent per argument",
    ),
    "custom-vjp-bwd-too-many": (
        """
        fn sq(x) = x * x
        fn sq_fwd(x) = (x * x, x)
        fn sq_bwd(r, ct) = (2.0 * r * ct, ct)
        fn main() = grad(custom_vjp(sq, sq_fwd, sq_bwd))(3.0)
        """,
        4,
        "one cotangent per argument",
    ),
    "custom-vjp-bwd-wrong-shape": (
        """
        fn sq(x) = x * x
        fn sq_fwd(x) = (x * x, x)
        fn sq_bwd(r, ct) = ([1.0, 2.0],)
        fn main() {
            let g = custom_vjp(sq, sq_fwd, sq_bwd);
            grad(g)(3.0)
        }""",
        5,
        "returns a cotangent f64[2] for an argument f64",
    ),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake_is_reported_at_the_line_of_the_call(name, tmp_path, capsys):
    src, line, phrase = MISTAKES[name]
    p = write(tmp_path, "prog.dfl", src)
    code, out, err = run(capsys, "run", p)
    assert code == 1
    first = err.splitlines()[0]
    assert re.match(rf"(.*/)?prog\.dfl:{line}:\d+: error: ", first), err
    assert phrase in first
    want_text = textwrap.dedent(src).lstrip().splitlines()[line - 1].strip()
    assert want_text in err  # the source line is shown

    with pytest.raises(diffc.DiffcError) as e:  # and from Python: the same error, never an internal one
        diffc.load(p).main()
    assert not isinstance(e.value, diffc.InternalError)
    assert e.value.span is not None and e.value.span.line == line


def test_python_api_mistakes_are_diffc_errors():
    m = diffc.compile("fn f(x) = x * 2.0\nfn g(x, n) = x * f64(n)\n", "api.dfl")
    x = np.ones(2)
    calls = {
        "returns a float scalar": lambda: diffc.grad(m.f)(x),
        "only float values have derivatives": lambda: diffc.grad(m.g, 1)(1.0, 3),
        "tangent of argument 0": lambda: diffc.jvp(m.f)(x, np.ones(3)),
        "cotangent must be shaped like": lambda: diffc.vjp(m.f)(x, np.ones(3)),
        "with respect to argument 3": lambda: diffc.grad(m.f, 3)(x),
    }
    for phrase, call in calls.items():
        with pytest.raises(diffc.DiffcError) as e:
            call()
        assert not isinstance(e.value, diffc.InternalError)
        assert phrase in e.value.message
        assert e.value.location is not None and e.value.location.startswith("api.dfl:")


HEADS = """
fn loss(q: f64[4, 8, 2], k: f64[4, 8, 2]) = sum(map(fn(qi, ki) => sin(qi @ transpose(ki)) @ ki, q, k) ** 2)
"""


def test_a_view_of_a_maps_row_is_made_again_not_taped(tmp_path, capsys):
    """transpose(ki) is read by the backward of qi @ transpose(ki): made again from ki, which the
    backward has, not taped (a copy per iteration); the gradients still those of finite
    differences."""
    p = write(tmp_path, "heads.dfl", HEADS)
    code, out, err = run(capsys, "show", "--grad", "loss", p)
    assert code == OK, err
    notes = [ln for ln in out.splitlines() if "tape:" in ln]
    assert notes and all("f64[2, 8]" not in ln for ln in notes), notes
    m = diffc.load(p)
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal((4, 8, 2)), rng.standard_normal((4, 8, 2))
    gq, gk = diffc.grad(m.loss, (0, 1))(q, k)
    want_q, want_k = numerical_grad(m.loss, (q, k), (0, 1))
    np.testing.assert_allclose(gq, want_q, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gk, want_k, rtol=1e-6, atol=1e-8)

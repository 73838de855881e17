"""`diffc build`: a program's functions and gradients as a C library (diffc/build.py).

A C program compiled by the system compiler calls the library in a process where Python is
not involved and checks the gradient against central differences of the loss; the generated
Python module gives what diffc.load gives; failures come back as codes with located messages;
the library depends on nothing of Python's or LLVM's."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import diffc
from diffc import build, cli
from diffc.pytree import Record
from diffc.typesys import DType, TensorType

CC = shutil.which("cc")
# DIFFC_REQUIRE_CC=1 makes a missing compiler fail these tests rather than skip them (with the reason printed)
NO_CC = "no C compiler (`cc`) on PATH: diffc build cannot link"
needs_cc = pytest.mark.skipif(CC is None and not os.environ.get("DIFFC_REQUIRE_CC"), reason=NO_CC)

MLP = """\
fn loss(p, x, y) {
  let h = tanh(x @ p.w1 + p.b1);
  mean((h @ p.w2 - y) ** 2)
}

fn pick(xs, i) = xs[i] * 2.0

fn mix(a, n, flag) = {twice: a * 2.0, next: n + 1, flipped: not flag, sum: sum(a)}
"""
MLP_ARGS = ["p={w1: f64[16, 64], b1: f64[64], w2: f64[64]}", "x=f64[128,16]", "y=f64[128]"]
MLP_ARGS += ["xs=f64[5]", "i=i64", "a=f32[3]", "n=i64", "flag=bool"]
FNS = ["loss", "grad:loss", "value_and_grad:loss", "pick", "mix"]

# The C test: the gradient of the MLP's loss against central differences of the loss, both
# through the library; value_and_grad against loss and grad; the same gradient from four
# threads at once; an index out of bounds as a code and a message.
C_TEST = r"""
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "mlp.h"

static double w1[MLP_LOSS_P_W1_SIZE], b1[MLP_LOSS_P_B1_SIZE], w2[MLP_LOSS_P_W2_SIZE];
static double x[MLP_LOSS_X_SIZE], y[MLP_LOSS_Y_SIZE];
static double gw1[MLP_LOSS_P_W1_SIZE], gb1[MLP_LOSS_P_B1_SIZE], gw2[MLP_LOSS_P_W2_SIZE];

static double loss(void) {
    double v;
    if (mlp_loss(b1, w1, w2, x, y, &v) != MLP_OK) { printf("loss failed: %s\n", mlp_last_error()); return NAN; }
    return v;
}

static int check(const char *name, double *p, const double *g, int n) {
    int bad = 0;
    for (int k = 0; k < n; k++) {
        double keep = p[k], h = 1e-6;
        p[k] = keep + h; double up = loss();
        p[k] = keep - h; double down = loss();
        p[k] = keep;
        double fd = (up - down) / (2 * h);
        if (!(fabs(fd - g[k]) <= 1e-6 * (1 + fabs(fd)))) {
            if (bad++ < 5) printf("%s[%d]: grad %.17g, central difference %.17g\n", name, k, g[k], fd);
        }
    }
    return bad;
}

static void *worker(void *arg) {
    double a[MLP_LOSS_P_W1_SIZE], b[MLP_LOSS_P_B1_SIZE], c[MLP_LOSS_P_W2_SIZE];
    long same = 1;
    for (int r = 0; r < 20; r++) {
        if (mlp_grad_loss(b1, w1, w2, x, y, b, a, c) != MLP_OK) return (void *)0;
        same &= !memcmp(a, gw1, sizeof a) && !memcmp(b, gb1, sizeof b) && !memcmp(c, gw2, sizeof c);
    }
    (void)arg;
    return (void *)same;
}

int main(void) {
    for (int k = 0; k < MLP_LOSS_P_W1_SIZE; k++) w1[k] = 0.3 * sin(0.7 * k + 0.1);
    for (int k = 0; k < MLP_LOSS_P_B1_SIZE; k++) b1[k] = 0.1 * cos(1.3 * k);
    for (int k = 0; k < MLP_LOSS_P_W2_SIZE; k++) w2[k] = 0.2 * sin(0.9 * k + 2.0);
    for (int k = 0; k < MLP_LOSS_X_SIZE; k++) x[k] = sin(0.37 * k);
    for (int k = 0; k < MLP_LOSS_Y_SIZE; k++) y[k] = cos(0.21 * k);
    if (mlp_grad_loss(b1, w1, w2, x, y, gb1, gw1, gw2) != MLP_OK) { printf("grad failed\n"); return 1; }
    int bad = check("w1", w1, gw1, MLP_LOSS_P_W1_SIZE) + check("b1", b1, gb1, MLP_LOSS_P_B1_SIZE)
            + check("w2", w2, gw2, MLP_LOSS_P_W2_SIZE);
    if (bad) { printf("%d gradient entries differ\n", bad); return 1; }

    double value, vb1[MLP_LOSS_P_B1_SIZE], vw1[MLP_LOSS_P_W1_SIZE], vw2[MLP_LOSS_P_W2_SIZE];
    if (mlp_value_and_grad_loss(b1, w1, w2, x, y, &value, vb1, vw1, vw2) != MLP_OK) return 1;
    if (value != loss() || memcmp(vw1, gw1, sizeof vw1) || memcmp(vb1, gb1, sizeof vb1)) {
        printf("value_and_grad differs from loss and grad\n");
        return 1;
    }

    pthread_t threads[4];
    for (int t = 0; t < 4; t++) pthread_create(&threads[t], NULL, worker, NULL);
    for (int t = 0; t < 4; t++) {
        void *same;
        pthread_join(threads[t], &same);
        if (!same) { printf("thread %d got another gradient\n", t); return 1; }
    }

    double xs[MLP_PICK_XS_SIZE] = {1, 2, 3, 4, 5}, out = 0;
    if (mlp_pick(xs, 3, &out) != MLP_OK || out != 8.0) { printf("pick(3) gave %g\n", out); return 1; }
    int code = mlp_pick(xs, 7, &out);
    printf("code %d\n%s\n", code, mlp_last_error());
    return code == MLP_ERR_BOUNDS ? 0 : 1;
}
"""


def diffc_cmd(*argv, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "diffc", *map(str, argv)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def build_args(src: Path, out: Path, fns, args) -> list:
    argv = ["build", src, "-o", out]
    for f in fns:
        argv += ["--fn", f]
    for a in args:
        argv += ["--arg", a]
    return argv


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """The MLP's library, built by `python -m diffc build`: (folder, source path)."""
    if CC is None and not os.environ.get("DIFFC_REQUIRE_CC"):
        pytest.skip(NO_CC)
    d = tmp_path_factory.mktemp("build")
    src = d / "mlp.dfl"
    src.write_text(MLP)
    done = diffc_cmd(*build_args(src, d / "out", FNS, MLP_ARGS))
    assert done.returncode == 0, done.stderr
    assert sorted(Path(line).name for line in done.stdout.split()) == ["libmlp.so", "mlp.h", "mlp.py"]
    return d / "out", src


def load_module(folder: Path, name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_{abs(hash(str(folder)))}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mlp_inputs():
    rng = np.random.default_rng(1)
    p = {"w1": rng.normal(size=(16, 64)), "b1": rng.normal(size=64), "w2": rng.normal(size=64)}
    return p, rng.normal(size=(128, 16)), rng.normal(size=128)


# --- the C library, from C ---------------------------------------------------------------------


@needs_cc
def test_a_c_program_checks_the_gradient_against_central_differences(mlp, tmp_path):
    out, _ = mlp
    (tmp_path / "test.c").write_text(C_TEST)
    exe = tmp_path / "test"
    cc = [CC, "-O1", "-std=c11", "-I", str(out), str(tmp_path / "test.c"), "-o", str(exe)]
    cc += ["-L", str(out), "-lmlp", f"-Wl,-rpath,{out}", "-lm", "-pthread"]
    done = subprocess.run(cc, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # (a plain C process: no Python, diffc or llvmlite in it)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "code 1"
    assert lines[1].endswith("mlp.dfl:6:18: error: index 7 is out of bounds for an axis of length 5")
    assert lines[2].strip() == "fn pick(xs, i) = xs[i] * 2.0"


@needs_cc
def test_the_library_needs_no_python_and_no_llvm(mlp):
    out, _ = mlp
    lib = out / "libmlp.so"
    ldd = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, timeout=60).stdout
    assert "python" not in ldd.lower() and "llvm" not in ldd.lower() and "openblas" not in ldd.lower()
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm")
    defined = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    exported = sorted(line.split()[-1] for line in defined.splitlines() if " T " in line)
    assert exported == sorted(
        ["mlp_last_error", "mlp_loss", "mlp_grad_loss", "mlp_value_and_grad_loss", "mlp_pick", "mlp_mix"]
    )
    undefined = subprocess.run([nm, "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
    assert not any(s in undefined for s in ("Py", "LLVM", "scipy_", "diffc_"))


@needs_cc
def test_the_header_documents_the_order_of_the_leaves(mlp):
    out, _ = mlp
    h = (out / "mlp.h").read_text()
    assert (
        "int mlp_value_and_grad_loss(const double *p_b1, const double *p_w1, const double *p_w2, const double *x,"
        " const double *y, double *out_0, double *out_1_b1, double *out_1_w1, double *out_1_w2);"
    ) in h
    assert "int mlp_pick(const double *xs, int64_t i, double *out);" in h
    assert "int mlp_mix(const float *a, int64_t n, bool flag, bool *out_flipped, int64_t *out_next," in h
    assert "#define MLP_LOSS_P_W1_SIZE 1024 /* p_w1: f64[16, 64] */" in h
    assert "#define MLP_ERR_BOUNDS 1" in h


# --- the Python module -------------------------------------------------------------------------


@needs_cc
def test_the_python_module_gives_what_diffc_load_gives(mlp):
    out, src = mlp
    lib = load_module(out, "mlp")
    m = diffc.load(src)
    p, x, y = mlp_inputs()
    # (products the library sums in another order than OpenBLAS: equal to rounding)
    assert lib.loss(p, x, y) == pytest.approx(m.loss(p, x, y), rel=1e-14)
    g, want = lib.grad_loss(p, x, y), diffc.grad(m.loss)(p, x, y)
    assert sorted(g) == sorted(want)
    for k in want:
        np.testing.assert_allclose(g[k], want[k], rtol=1e-12, atol=1e-14)
    v, g2 = lib.value_and_grad_loss(p=p, x=x, y=y)
    assert v == lib.loss(p, x, y) and all(np.array_equal(g2[k], g[k]) for k in g)
    a = np.array([1.5, -2.0, np.inf], dtype=np.float32)
    got, want = lib.mix(a, 41, True), m.mix(a, 41, True)
    assert got.keys() == want.keys()
    assert got["twice"].dtype == np.float32 and np.array_equal(got["twice"], want["twice"])
    assert (
        (got["next"], got["flipped"], got["sum"]) == (want["next"], want["flipped"], want["sum"]) == (42, False, np.inf)
    )


@needs_cc
def test_the_python_module_raises_the_librarys_message(mlp):
    out, _ = mlp
    lib = load_module(out, "mlp")
    assert lib.pick(np.arange(5.0), -5) == 0.0
    with pytest.raises(lib.Error, match=r"mlp.dfl:6:18: error: index 5 is out of bounds for an axis of length 5"):
        lib.pick(np.arange(5.0), 5)
    with pytest.raises(ValueError, match=r"xs: expected shape \(5,\), got \(4,\)"):
        lib.pick(np.arange(4.0), 1)
    with pytest.raises(TypeError, match="expected i64 values"):
        lib.pick(np.arange(5.0), 1.5)
    p, x, y = mlp_inputs()
    del p["b1"]
    with pytest.raises(TypeError, match="p: expected a record"):
        lib.loss(p, x, y)


PRINTS = """\
fn shout(x, n, b) {
  print("x is", x, {n: n, t: (b,), small: x[0] * 1e-6}, x * 1e20);
  print(-0.0, 0.1 + 0.2, 1.0 / 3.0, 100000.0, 1e16, 123456789012345678.0, 0.0001, 0.00001);
  sum(x)
}
"""


@needs_cc
def test_print_writes_what_diffc_run_writes(tmp_path):
    src = tmp_path / "loud.dfl"
    src.write_text(PRINTS)
    done = diffc_cmd(*build_args(src, tmp_path, ["shout"], ["x=f64[3]", "n=i64", "b=bool"]))
    assert done.returncode == 0, done.stderr
    values = "[1.5, -2.0, 1e-300]"
    want = diffc_cmd("run", src, "--entry", "shout", "--arg", f"x={values}", "--arg", "n=-7", "--arg", "b=true")
    assert want.returncode == 0, want.stderr
    script = f"import sys, numpy as np; sys.path.insert(0, {str(tmp_path)!r}); import loud; "
    script += f"print(loud.shout(np.array({values}), -7, True))"
    env = dict(os.environ, PYTHONPATH="")  # (the module needs NumPy only)
    got = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert got.returncode == 0, got.stderr
    assert got.stdout == want.stdout


@needs_cc
def test_a_split_loop_runs_on_the_calling_thread(tmp_path):
    """The library's runtime runs a parallel loop (See Note [Parallel loops]) whole."""
    src = tmp_path / "wide.dfl"
    src.write_text("fn f(x) = exp(x) * 2.0 + transpose(x)\n")
    done = diffc_cmd(*build_args(src, tmp_path, ["f"], ["x=f64[512,512]"]))
    assert done.returncode == 0, done.stderr
    x = np.random.default_rng(0).standard_normal((512, 512))
    np.testing.assert_allclose(load_module(tmp_path, "wide").f(x), np.exp(x) * 2.0 + x.T, rtol=1e-13, atol=1e-13)


# --- the command line --------------------------------------------------------------------------


def run(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize(
    "fns, args, message",
    [
        (["gradient:loss"], ["x=f64[2]"], "--fn gradient:loss: expected NAME, grad:NAME or value_and_grad:NAME"),
        (["nothere"], ["x=f64[2]"], "the program has no function `nothere`"),
        (["loss"], [], "`loss` needs the type of parameter `x`: give it with --arg x=TYPE"),
        ([], ["x=f64[2]"], "give at least one --fn"),
        (["loss", "loss"], ["x=f64[2]"], "--fn loss and --fn loss both make p_loss"),
        (["grad:loss", "grad_loss"], ["x=f64[2]"], "--fn grad(loss) and --fn grad_loss both make p_grad_loss"),
        (["last_error"], ["x=f64[2]"], "p_last_error is the library's error message function"),
        (["_hidden"], ["x=f64[2]"], "p.py names its own things Error and _NAME: rename `_hidden`"),
        (["loss"], ["x=f64[2"], "--arg x=f64[2: expected a number"),
    ],
)
def test_command_line_mistakes_are_usage_errors(capsys, tmp_path, fns, args, message):
    src = tmp_path / "p.dfl"
    src.write_text("fn loss(x) = sum(x * x)\nfn grad_loss(x) = x\nfn last_error(x) = x\nfn _hidden(x) = x\n")
    code, _, err = run(capsys, *build_args(src, tmp_path, fns, args))
    assert code == 2 and message in err


@needs_cc
def test_a_prefix_of_diffcs_own_is_refused(capsys, tmp_path):
    src = tmp_path / "diffc.dfl"
    src.write_text("fn loss(x) = sum(x * x)\n")
    code, _, err = run(capsys, *build_args(src, tmp_path, ["loss"], ["x=f64[2]"]))
    assert code == 2 and "the prefix diffc is diffc's own: choose another with --name" in err
    code, _, err = run(capsys, *build_args(src, tmp_path, ["loss"], ["x=f64[2]"]), "--name", "sq")
    assert code == 0, err
    assert (tmp_path / "libsq.so").exists() and "int sq_loss(const double *x, double *out);" in (
        tmp_path / "sq.h"
    ).read_text()


@needs_cc
def test_a_mistake_in_the_program_is_located(capsys, tmp_path):
    src = tmp_path / "p.dfl"
    src.write_text("fn loss(x, w) = sum(x @ w)\n")
    code, _, err = run(capsys, *build_args(src, tmp_path, ["grad:loss"], ["x=f64[3]", "w=f64[4, 2]"]))
    assert code == 1 and "p.dfl:1:" in err and "error:" in err
    assert not (tmp_path / "libp.so").exists()


@needs_cc
def test_an_example_value_gives_the_type(capsys, tmp_path):
    src = tmp_path / "2-step.dfl"
    src.write_text("fn step(p, lr) = {w: p.w - lr * p.w}\n")
    diffc.save(tmp_path / "p.npz", {"w": np.ones((2, 3))})
    code, out, err = run(capsys, *build_args(src, tmp_path / "o", ["step"], [f"p={tmp_path / 'p.npz'}", "lr=0.5"]))
    assert code == 0, err
    assert (
        "int _2_step_step(const double *p_w, double lr, double *out_w);" in (tmp_path / "o" / "_2_step.h").read_text()
    )
    lib = load_module(tmp_path / "o", "_2_step")
    assert np.array_equal(lib.step({"w": np.ones((2, 3))}, 0.5)["w"], np.full((2, 3), 0.5))


# --- the pieces --------------------------------------------------------------------------------


def test_types_on_the_command_line():
    f64 = DType.F64
    assert build.parse_type("f64") == TensorType(f64, ())
    assert build.parse_type("i64[3, 0]") == TensorType(DType.I64, (3, 0))
    t = build.parse_type("{w: f64[3,4], b: (f32, bool[2])}")
    assert isinstance(t, Record) and list(t.fields) == ["w", "b"]
    assert t.fields["b"] == (TensorType(DType.F32, ()), TensorType(DType.BOOL, (2,)))
    for text in ("f65", "f64[3", "f64[-1]", "{w f64}", "{w: f64, w: f64}", "1.5", "[1, 2]", "f64 f64", ""):
        assert build.parse_type(text) is None, text


def test_c_strings_escape_what_c_would_read_otherwise():
    assert build.c_string('a"b\\c\n%d ??= é') == '"a\\"b\\\\c\\012%d \\?\\?= \\303\\251"'


DEEP = """\
fn down(n) = if n == 0 { 0 } else { 1 + down(n - 1) }
"""
DEEP_CALLS = """\
import sys, threading
sys.path.insert(0, sys.argv[1])
import deep

def call(n):
    try:
        print(deep.down(n))
    except deep.Error as e:
        print(e.code, str(e).splitlines()[0])

call(100)
call(100000)
threading.stack_size(512 << 10)  # (a thread whose stack is full long before 10000 calls)
t = threading.Thread(target=call, args=(9999,))
t.start()
t.join()
"""


@needs_cc
def test_deep_recursion_is_an_error_code_not_a_crash(tmp_path):
    src = tmp_path / "deep.dfl"
    src.write_text(DEEP)
    done = diffc_cmd(*build_args(src, tmp_path, ["down"], ["n=i64"]))
    assert done.returncode == 0, done.stderr
    (tmp_path / "calls.py").write_text(DEEP_CALLS)
    env = dict(os.environ, PYTHONPATH="")
    run = subprocess.run(
        [sys.executable, str(tmp_path / "calls.py"), str(tmp_path)], capture_output=True, text=True, timeout=60, env=env
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "100"
    assert lines[1].startswith("2 ") and "more than 10000 nested calls of `down`" in lines[1]
    assert lines[2].startswith("4 ") and "nested calls of `down` fill the native stack" in lines[2]


@needs_cc
def test_functions_named_like_the_python_modules_imports(tmp_path):
    src = tmp_path / "names.dfl"
    src.write_text("fn np(x) = x * 2.0\nfn json(x) = x + 1.0\nfn os(x) = x\n")
    done = diffc_cmd(*build_args(src, tmp_path, ["np", "json", "os"], ["x=f64[2]"]))
    assert done.returncode == 0, done.stderr
    lib = load_module(tmp_path, "names")
    assert lib.np(np.ones(2)).tolist() == [2.0, 2.0] and lib.json(np.ones(2)).tolist() == [2.0, 2.0]


def test_the_prefix_is_the_file_name_as_a_c_identifier():
    assert [build.library_prefix(p) for p in ("a/mlp.dfl", "2-step.dfl", "my model.dfl", "-")] == [
        "mlp",
        "_2_step",
        "my_model",
        "prog",
    ]

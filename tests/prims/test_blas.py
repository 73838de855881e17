"""Matrix products large enough for a call (the generated kernel, OpenBLAS's gemv for a matrix
times a vector), on every kind of view the generated code passes without copying (row slices,
column slices, transposes), against NumPy; OpenBLAS's own threads and cores."""

import numpy as np
import pytest

import diffc

SRC = """
fn mm(a, b) = a @ b
fn mm_t(a, b) = transpose(a) @ transpose(b)
fn mm_slices(a, b) = a[1:41, 2:52] @ b[2:52, 3:63]
fn mv(a, x) = a @ x
fn mv_t(a, x) = transpose(a) @ x
fn vm(x, b) = x @ b
fn vm_t(x, b) = x @ transpose(b)
fn rows(a, b) = map(fn(r) => r @ b, a)
fn mm_bt(a, b) = a @ transpose(b, [0, 2, 1])
"""


@pytest.fixture(scope="module")
def m():
    return diffc.compile(SRC)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_products_match_numpy(m, dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((45, 60)).astype(dtype), rng.standard_normal((60, 70)).astype(dtype)
    x, y = rng.standard_normal(60).astype(dtype), rng.standard_normal(45).astype(dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.mm(a, b), a @ b, **tol)
    np.testing.assert_allclose(m.mm_t(b, a), b.T @ a.T, **tol)
    np.testing.assert_allclose(m.mm_slices(a, b), a[1:41, 2:52] @ b[2:52, 3:63], **tol)
    np.testing.assert_allclose(m.mv(a, x), a @ x, **tol)
    np.testing.assert_allclose(m.mv_t(a, y), a.T @ y, **tol)
    np.testing.assert_allclose(m.vm(y, a), y @ a, **tol)
    np.testing.assert_allclose(m.vm_t(x, a), x @ a.T, **tol)
    np.testing.assert_allclose(m.rows(a, b), a @ b, **tol)


def test_gradient_through_a_large_product(m):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((45, 60)), rng.standard_normal((60, 70))
    f = diffc.compile("fn f(a, b) = sum(tanh(a @ b))")
    ga, gb = diffc.grad(f.f, (0, 1))(a, b)
    d = 1 - np.tanh(a @ b) ** 2
    np.testing.assert_allclose(ga, d @ b.T, rtol=1e-10)
    np.testing.assert_allclose(gb, a.T @ d, rtol=1e-10)


CORENAME = """
import ctypes, os
from diffc.lower import jit
assert jit.blas_available()
import scipy_openblas64 as s
lib = ctypes.CDLL(os.path.join(s.get_lib_dir(), f"lib{s.get_library()}.so"))
lib.scipy_openblas_get_corename64_.restype = ctypes.c_char_p
print(lib.scipy_openblas_get_corename64_().decode(), "OPENBLAS_CORETYPE" in os.environ)
"""


@pytest.mark.parametrize("pinned", [None, "Haswell"])
def test_openblas_runs_avx512_kernels_where_the_cpu_has_them_unless_pinned(pinned):
    import os
    import subprocess
    import sys

    from diffc.lower import jit

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if pinned:
        env["OPENBLAS_CORETYPE"] = pinned
    out = subprocess.run([sys.executable, "-c", CORENAME], env=env, capture_output=True, text=True, check=True)
    core, still_set = out.stdout.split()
    if pinned:
        assert (core, still_set) == (pinned, "True")
    else:
        assert still_set == "False"  # the process's environment is left as it was
        if jit._has_avx512():
            assert core == "SkylakeX"


THREADS = """
import ctypes, os
import numpy as np
import diffc
from diffc.lower import jit
import scipy_openblas64 as s
lib = ctypes.CDLL(os.path.join(s.get_lib_dir(), f"lib{s.get_library()}.so"))
if os.environ.get("LOADED_BEFORE"):
    lib.scipy_openblas_set_num_threads64_(2)
assert jit.blas_available()
a = np.ones((600, 600))
assert float(diffc.compile("fn f(a) = sum(a @ a)").f(a)) == 600.0**3
print(lib.scipy_openblas_get_num_threads64_(), os.environ["OPENBLAS_NUM_THREADS"])
"""


@pytest.mark.parametrize("loaded_before", [False, True])
def test_openblas_runs_on_one_thread_whatever_the_environment_says(loaded_before):
    # two pools on the same cores: diffc's threads run products in pieces (Note [Products on
    # threads] in prims/linalg.py), and gemv on the calling thread
    import os
    import subprocess
    import sys

    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", DIFFC_CACHE="0")
    if loaded_before:  # by another library of the process, with two threads
        env["LOADED_BEFORE"] = "1"
    out = subprocess.run([sys.executable, "-c", THREADS], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "2"]  # one thread; the variable left for the others


BATCHED = [((3, 40, 50), (3, 50, 60)), ((2, 1, 40, 50), (3, 50, 60)), ((40, 50), (2, 50, 60)), ((3, 40, 50), (50, 60))]


@pytest.mark.parametrize("sa, sb", BATCHED, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batched_products_match_numpy(m, sa, sb, dtype):
    """Batch axes broadcast as NumPy's; each matrix is read in place from its batch."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(sa).astype(dtype), rng.standard_normal(sb).astype(dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m.mm(a, b), np.matmul(a, b), **tol)
    if a.ndim == b.ndim == 3:  # an operand that is a batch of transposed views
        bt = np.ascontiguousarray(np.swapaxes(b, 1, 2))
        np.testing.assert_allclose(m.mm_bt(a, bt), np.matmul(a, b), **tol)


def test_a_batched_product_calls_the_matrix_kernel_per_batch():
    """A loop over the batch around one call of the generated kernel, not a loop nest of
    multiply-adds per element."""
    from support.native import ir_of

    from diffc.lower.llvm import lower_program

    prog = ir_of(diffc.compile("fn f(a, b) = a @ b"), "f", np.ones((4, 32, 32)), np.ones((4, 32, 32)))
    text = str(lower_program(prog).module)
    assert 'call void @"diffc_gemm2_f64"' in text and "mb0.body:" in text

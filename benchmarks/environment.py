"""The process environment every implementation runs in, set before NumPy, JAX or PyTorch is
imported (they read it then); subprocesses inherit it.

- One thread count for every library: the BLAS and OpenMP variables, XLA's flags, and
  torch.set_num_threads once torch is imported (pin_libraries).
- One floating-point mode: subnormal floats flushed to zero, as XLA always does on the CPU;
  diffc through DIFFC_FLUSH_DENORMAL, PyTorch through torch.set_flush_denormal. Both compute
  in IEEE's mode by default, where a recurrence whose cotangents fade below float32's
  smallest normal (the rnn family's T200 b64 h256) ran 8x slower than in JAX on an Intel
  core: the core's microcode for subnormals was timed, not the libraries.
- diffc's and torch.compile's on-disk caches (inductor's, on by default) in a new, empty
  directory, so that a first call in the runner is a cold compile and a first call in a probe's
  new process finds the cache the runner filled: the warm start a user gets."""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "DIFFC_THREADS")


def prepare(threads: int, cache_dir: str):
    late = [m for m in ("numpy", "jax", "torch") if m in sys.modules]
    if late:
        print(f"warning: {', '.join(late)} imported before the environment was set", file=sys.stderr)
    for var in THREAD_VARIABLES:
        os.environ[var] = str(threads)
    eigen = "false" if threads == 1 else "true"
    os.environ["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={threads}"
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    os.environ["DIFFC_CACHE_DIR"] = os.path.join(cache_dir, "diffc")
    os.environ["DIFFC_FLUSH_DENORMAL"] = "1"


def pin_libraries(threads: int):
    """What can only be set through a library's API, once it is imported. (For a benchmark's
    own process: PyTorch's float mode is the calling thread's, for all that runs after.)"""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)

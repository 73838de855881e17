"""Cold compile times (the disk cache off), split into diffc's own stages (Python) and LLVM's
optimiser and code generator (issue 12), for three groups:

- mlp: value_and_grad of an MLP written out with L layers, L = 2 .. 64, to see how the compile
  grows with the program, and JAX's first call of its jit of the same, where JAX is
  installed. Each layer is `tanh(h @ w + b)` with 16 x 16 weights on a batch of 8, the loss
  sum(h_L ** 2).
- workloads: the forward and value_and_grad functions benchmarks/diffc_impl.py compiles for
  each of benchmarks/workloads/*.dfl.
- examples: `main` of each examples/*.dfl, and the training step of each training script
  under examples/ (the script runs until its first compile of a derivative or of `step`,
  with made-up digits in place of scikit-learn's: only their shapes matter here).

Run: python benchmarks/compile_time.py [mlp [L ...] | workloads | examples] (all three
groups by default). It prints, per compile, the wall and CPU seconds (of this process) of the
first call, and the wall seconds of diffc's own stages, of LLVM's optimiser and code generator
in this process, and of the LLVM worker process's share, which runs at the same time
(pipeline.Timings; Note [Units] in diffc/lower/llvm.py). A benchmark, not a test: it asserts
nothing about time (the machines it runs on are shared and noisy; CPU seconds vary less)."""

from __future__ import annotations

import os
import runpy
import sys
import time
import types
from pathlib import Path

os.environ["DIFFC_CACHE"] = "0"  # every compile is cold
# every module compiled here as in a new process, not by the LLVM worker alone after the first
# 32 (Note [The LLVM worker]): a long module's second unit goes to the worker at the same time
os.environ.setdefault("DIFFC_LLVM_WORKER", "1000000")

import numpy as np  # noqa: E402

import diffc  # noqa: E402
import diffc.api  # noqa: E402
from diffc.pipeline import COLLECT_STAGE, Timings  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAYERS = (2, 4, 8, 16, 32, 64)
WIDTH, BATCH = 16, 8
LLVM_STAGES = ("llvm-opt", "llvm-codegen", "llvm-opt+codegen (worker)")
# the training scripts, with arguments that keep them short and quiet until their first step
SCRIPTS = {
    "digits/train_mlp.py": ["--no-torch", "--epochs", "1"],
    "digits/train_convnet.py": ["--no-torch", "--epochs", "1"],
    "digits/train_vae.py": ["--no-torch", "--epochs", "1"],
    "ode/fit.py": ["--no-torch", "--steps", "1"],
    "stack/train_reverse.py": ["--no-torch", "--steps", "1"],
    "text/train_char_rnn.py": ["--no-torch", "--steps", "1"],
    "trees/train_logic.py": ["--no-torch", "--steps", "1"],
}


def mlp_source(layers: int) -> str:
    lines = ["fn loss(p, x) {", "    let h0 = x;"]
    lines += [f"    let h{i + 1} = tanh(h{i} @ p.w{i} + p.b{i});" for i in range(layers)]
    lines += [f"    sum(h{layers} * h{layers})", "}"]
    return "\n".join(lines) + "\n"


def timed_compile(fn, *args) -> tuple[float, float, Timings]:
    """(wall s, CPU s, stages) of compiling diffc Function `fn` for these arguments."""
    arrays, key = fn.signature(*args)
    timings = Timings()
    wall, cpu = time.perf_counter(), time.process_time()
    fn.compiled(arrays, key, timings)
    return time.perf_counter() - wall, time.process_time() - cpu, timings


def cold_compile(layers: int) -> tuple[float, float, Timings]:
    """(wall s, CPU s, stages) of the first value_and_grad call of the L-layer MLP."""
    rng = np.random.default_rng(0)
    p = {f"w{i}": rng.standard_normal((WIDTH, WIDTH)) * 0.3 for i in range(layers)}
    p.update({f"b{i}": np.zeros(WIDTH) for i in range(layers)})
    x = rng.standard_normal((BATCH, WIDTH))
    vg = diffc.value_and_grad(diffc.compile(mlp_source(layers), name=f"mlp{layers}").loss)
    return timed_compile(vg, p, x)


def mlp_rows(layers):
    for n in layers or LAYERS:
        yield f"mlp L={n}", *cold_compile(n)
        if jax_first_call is not None:
            yield f"mlp L={n} JAX's first call", *jax_first_call(n)


def _jax_first_call(layers: int) -> tuple[float, float, Timings]:
    """(wall s, CPU s, no stages) of the first call of JAX's jit of value_and_grad of the same
    MLP: its tracing and XLA's compile."""
    import jax.numpy as jnp

    def loss(p, x):
        h = x
        for i in range(layers):
            h = jnp.tanh(h @ p[f"w{i}"] + p[f"b{i}"])
        return jnp.sum(h * h)

    rng = np.random.default_rng(0)
    p = {f"w{i}": rng.standard_normal((WIDTH, WIDTH)) * 0.3 for i in range(layers)}
    p.update({f"b{i}": np.zeros(WIDTH) for i in range(layers)})
    x = rng.standard_normal((BATCH, WIDTH))
    vg = jax.jit(jax.value_and_grad(loss))
    wall, cpu = time.perf_counter(), time.process_time()
    jax.block_until_ready(vg(p, x))
    return time.perf_counter() - wall, time.process_time() - cpu, Timings()


try:  # JAX beside diffc where it is installed (an optional peer, as in benchmarks/impls.py)
    import jax

    jax.config.update("jax_enable_x64", True)
    jax_first_call = _jax_first_call
except ImportError:
    jax_first_call = None


def workload_rows():
    sys.path.insert(0, str(ROOT))
    from benchmarks import data, diffc_impl

    for name in data.NAMES:
        params, inputs = data.data(name)
        m = diffc.load(diffc_impl.WORKLOADS / f"{name}.dfl")
        vg = diffc.value_and_grad(m.loss, argnums=tuple(range(len(params))))
        yield f"{name} forward", *timed_compile(m.loss, *params, *inputs)
        yield f"{name} value_and_grad", *timed_compile(vg, *params, *inputs)


class _Compiled(Exception):
    """Raised by the hook once the training step has been compiled: the script stops there."""


def example_rows():
    for path in sorted((ROOT / "examples").glob("*.dfl")):
        m = diffc.load(path)
        yield f"{path.name} main", *timed_compile(m.main)
    fake = types.ModuleType("data")
    fake.digits = _made_up_digits
    compile_native = diffc.api.compile_native
    for script, args in SCRIPTS.items():
        seen = []

        def hook(module, fn_name, arg_types, timings=None, transform=(), values=None):
            timings = timings if timings is not None else Timings()
            wall, cpu = time.perf_counter(), time.process_time()
            out = compile_native(module, fn_name, arg_types, timings, transform, values)
            seen.append((fn_name, time.perf_counter() - wall, time.process_time() - cpu, timings))
            if transform or fn_name == "step":
                raise _Compiled
            return out

        diffc.api.compile_native, sys.modules["data"] = hook, fake
        sys.argv = [script, *args]
        try:
            runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
        except _Compiled:
            pass
        finally:
            diffc.api.compile_native = compile_native
            del sys.modules["data"]
        for fn_name, wall, cpu, timings in seen:
            yield f"{script} {fn_name}", wall, cpu, timings


def _made_up_digits(test_fraction: float = 0.25, seed: int = 0):
    """examples/digits/data.py's digits() in shapes and dtypes, without scikit-learn."""
    rng = np.random.default_rng(seed)
    n_test = int(1797 * test_fraction)
    x, y = rng.random((1797, 64)), rng.integers(0, 10, 1797)
    return (x[n_test:], y[n_test:]), (x[:n_test], y[:n_test])


def print_row(what: str, wall: float, cpu: float, timings: Timings) -> None:
    llvm = [timings.get(stage, 0.0) for stage in LLVM_STAGES]
    # (the collection of the compile's garbage runs while the worker works: not on the way)
    python = sum(secs for stage, secs in timings.items() if stage not in (*LLVM_STAGES, COLLECT_STAGE))
    print(f"{what:40s} {wall:7.3f} {cpu:7.3f} {python:7.3f} {llvm[0]:7.3f} {llvm[1]:7.3f} {llvm[2]:7.3f}", flush=True)


def main(argv: list[str]) -> None:
    groups = {"mlp": lambda: mlp_rows([int(a) for a in argv[1:]]), "workloads": workload_rows, "examples": example_rows}
    chosen = [argv[0]] if argv else list(groups)
    if chosen[0] not in groups:
        sys.exit(f"usage: python benchmarks/compile_time.py [mlp [L ...] | workloads | examples], not {argv[0]!r}")
    diffc.compile("fn f(x) = x + 1.0").f(1.0)  # LLVM's initialisation, kept out of the first row
    if jax_first_call is not None and "mlp" in chosen:
        jax.block_until_ready(jax.jit(lambda x: x + 1.0)(1.0))  # and XLA's
    print(f"{'compile (cold)':40s} {'wall s':>7} {'cpu s':>7} {'python':>7} {'opt':>7} {'codegen':>7} {'worker':>7}")
    for group in chosen:
        for row in groups[group]():
            print_row(*row)


if __name__ == "__main__":
    main(sys.argv[1:])

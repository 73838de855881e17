"""How LLVM's work is chosen and shared out (Notes [Glue functions] and [Units] in
lower/llvm.py): the direct Python entry is compiled without the vectorisers and calls the
entry Func, which keeps the whole pipeline; a long module is compiled as two units, at the
same time, into objects that run and are cached as one program; a short one as before. No
timed assertion: the mechanisms themselves are checked."""

from __future__ import annotations

import gc
import os
import re
import threading

import numpy as np
import pytest
from support.native import in_threads
from test_parts import assert_numpy_value_and_grad, gradient_program, mlp_data, mlp_source

import diffc
from diffc import pipeline
from diffc.errors import ShapeError
from diffc.lower import jit, llvm_worker
from diffc.lower.llvm import LOOP_LINES, _weight, lower_program, module_units
from diffc.lower.pyentry import PYCALL_SYMBOL
from diffc.pipeline import Timings, to_ir
from diffc.typesys import DType, TensorType

SOURCE = "fn f(x) = sum(x * 2.5)\n"


def lowered():
    prog, tree = to_ir(diffc.compile(SOURCE).ast, "f", (TensorType(DType.F64, (1000,)),))
    return lower_program(prog, tree).module


def functions(text: str) -> dict[str, str]:
    """{name: text} of each function defined in LLVM IR text."""
    out = {}
    for chunk in re.split(r"\n(?=define )", text)[1:]:
        out[re.match(r'define [^@]*@"?([\w.]+)', chunk).group(1)] = chunk
    return out


def test_python_entry_is_glue_and_calls_the_entry_func_not_inlined():
    fns = functions(str(lowered()))
    head = fns[PYCALL_SYMBOL].split("\n", 1)[0]
    assert "noimplicitfloat" in head
    calls = re.findall(r'call [^\n]*@"dfl\.main"\([^\n]*', fns[PYCALL_SYMBOL])
    assert calls and all(c.rstrip().endswith("noinline") for c in calls)
    glue = {name for name in fns if "noimplicitfloat" in fns[name].split("\n", 1)[0]}
    assert glue == {PYCALL_SYMBOL, "diffc_pyarray_f64_1"}  # it and the helper that checks x


def pycall_lines(n_arrays: int, n_numbers: int = 0) -> int:
    """Lines of LLVM IR of the glue (diffc_pycall and its helpers) of a function of n_arrays
    f64 arrays of three shapes and n_numbers numbers of three types, returning each."""
    shapes, kinds = [(4,), (2, 3), (5,)], [DType.F64, DType.I64, DType.BOOL]
    params = [f"a{k}" for k in range(n_arrays)] + [f"s{k}" for k in range(n_numbers)]
    m = diffc.compile(f"fn f({', '.join(params)}) = ({', '.join(params)},)\n")
    types = [TensorType(DType.F64, shapes[k % 3]) for k in range(n_arrays)]
    types += [TensorType(kinds[k % 3], ()) for k in range(n_numbers)]
    prog, tree = to_ir(m.ast, "f", tuple(types))
    text = str(lower_program(prog, tree).module)
    glue = [chunk for name, chunk in functions(text).items() if name.startswith("diffc_py")]
    return sum(chunk.split("\n}\n", 1)[0].count("\n") for chunk in glue)


def test_python_entry_grows_by_a_few_lines_per_argument_and_result():
    """Each argument is checked by a call of the helper of its kind, each result boxed in a
    few lines: the glue of 65 arrays (an MLP of 32 layers, in and out) was 5500 lines, its optimisation
    a quarter of a second."""
    per_array = (pycall_lines(60) - pycall_lines(30)) / 30
    assert per_array <= 15  # 12; was 91 (a branch per check and dimension, a release per result)
    per_number = (pycall_lines(3, 30) - pycall_lines(3, 15)) / 15
    assert per_number <= 15  # 11; was 51


def test_entry_func_loop_is_vectorised_once_the_glue_is_optimised():
    fns = functions(str(jit.optimise(str(lowered()))))
    assert re.search(r"<\d+ x double>", fns["dfl.main"])  # its own function, vectorised
    assert re.search(r"call [^\n]*@dfl\.main", fns[PYCALL_SYMBOL])  # called, not inlined


# Note [Units] in lower/llvm.py: a long module is compiled as two units at the same time


def long_gradient(layers: int = 12):
    """An MLP's gradient whose layers are all of different sizes (none is one function for
    several: Note [Repeated parts]), long enough to be two units."""
    m = diffc.compile(mlp_source(layers))
    return diffc.value_and_grad(m.loss), mlp_data(layers, varied=True)


def lowered_long():
    prog, out_tree = gradient_program(12, varied=True)
    return lower_program(prog, out_tree).module


def test_short_module_is_one_unit_of_the_same_text():
    module = lowered()
    assert module_units(module) == [str(module)]


def test_long_module_units_define_each_function_once():
    module = lowered_long()
    units = module_units(module)
    assert len(units) == 2
    defined = [name for text in units for name in functions(text)]
    assert sorted(defined) == sorted(functions(str(module)))
    assert "diffc_entry" in functions(units[0])  # (dfl.main, only calls of its parts, is glue: it may move)
    for text in units:
        jit.parse(text)  # each is a whole module: what it calls in the other unit is declared


def test_units_are_balanced_by_weight_not_lines():
    # glue (diffc_pycall, not optimised) counts a quarter of its lines, a loop LOOP_LINES more:
    # each unit's weight, and the units about as heavy as each other
    module = lowered_long()
    glue = module.globals[PYCALL_SYMBOL]
    assert _weight(glue, str(glue)) == (str(glue).count("\n") + 1) // 4
    looped = [f for f in module.functions if f.blocks and str(f).count(" = phi ") and "optnone" not in f.attributes]
    assert looped
    for f in looped:
        text = str(f)
        assert _weight(f, text) == text.count("\n") + 1 + LOOP_LINES * text.count(" = phi ")
    units = module_units(module)
    loads = [sum(_weight(module.globals[n], str(module.globals[n])) for n in functions(text)) for text in units]
    movable = [_weight(f, str(f)) for f in module.functions if f.blocks and "noinline" in f.attributes]
    assert abs(loads[0] - loads[1]) <= max(movable)


def compiled_here(monkeypatch, before=None, after=None) -> list[str]:
    """The texts jit.object_code compiles in this process from now on, calling before(text)
    and after(text) around each, when given."""
    monkeypatch.setenv("DIFFC_LLVM_WORKER", "1000000")  # (here, not by the worker after 32)
    seen, real = [], jit.object_code

    def here(text, timings=None):
        if before is not None:
            before(text)
        seen.append(text)
        code = real(text, timings)
        if after is not None:
            after(text)
        return code

    monkeypatch.setattr(jit, "object_code", here)
    return seen


def test_units_are_all_compiled_here_while_the_worker_is_starting(monkeypatch):
    texts = module_units(lowered_long())
    returned, waited = threading.Event(), []
    real_wait = llvm_worker._Worker.wait_ready

    def starting(worker):  # it starts once the compile has returned, not waiting for it
        waited.append(returned.wait(timeout=60))
        real_wait(worker)

    monkeypatch.setattr(llvm_worker._Worker, "wait_ready", starting)
    seen = compiled_here(monkeypatch)
    timings = Timings()
    blob = jit.object_code_units(texts, timings)
    returned.set()
    for thread in threading.enumerate():  # (it ends once the worker has started: nothing to do)
        if thread.name == "diffc-llvm-units":
            thread.join(timeout=60)
    assert waited == [True]
    assert seen == [texts[0], texts[1]]
    assert not any("worker" in stage for stage in timings)
    assert jit.unpack_objects(blob) == [jit.object_code_here(text) for text in texts]


def test_a_worker_that_has_started_takes_the_second_unit(monkeypatch):
    texts = module_units(lowered_long())
    sent = threading.Event()
    real_ask = llvm_worker._Worker.ask

    def ask(worker, data):
        sent.set()
        return real_ask(worker, data)

    monkeypatch.setattr(llvm_worker._Worker, "ask", ask)
    seen = compiled_here(monkeypatch, before=lambda text: sent.wait(timeout=60))
    timings = Timings()
    blob = jit.object_code_units(texts, timings)
    assert seen == [texts[0]] and sent.is_set()
    assert "llvm-opt+codegen (worker)" in timings
    assert jit.unpack_objects(blob) == [jit.object_code_here(text) for text in texts]


def worker_waits_for(monkeypatch, event: threading.Event) -> None:
    """The worker's reply (to a unit sent from now on) waits until `event` is set (60 s at most)."""
    real_ask = llvm_worker._Worker.ask

    def ask(worker, data):
        event.wait(timeout=60)
        return real_ask(worker, data)

    monkeypatch.setattr(llvm_worker._Worker, "ask", ask)


def test_idle_is_called_while_the_worker_still_compiles(monkeypatch):
    texts = module_units(lowered_long())
    called = threading.Event()
    worker_waits_for(monkeypatch, called)
    seen = compiled_here(monkeypatch)
    blob = jit.object_code_units(texts, Timings(), idle=called.set)
    assert called.is_set() and seen == [texts[0]]
    assert jit.unpack_objects(blob) == [jit.object_code_here(text) for text in texts]


def test_idle_is_not_called_when_nothing_is_waited_for(monkeypatch):
    texts = module_units(lowered_long())
    calls = []
    monkeypatch.setenv("DIFFC_LLVM_WORKER", "off")  # all here, in turn
    jit.object_code_units(texts, Timings(), idle=lambda: calls.append(1))
    assert jit.object_code_units(texts[:1], Timings(), idle=lambda: calls.append(1))
    assert calls == []


def test_the_worker_says_when_it_has_started():
    worker = llvm_worker._Worker(dict(os.environ, DIFFC_OPT=str(jit.OPT_LEVEL)))
    try:
        assert worker.proc.stdout.read(1) == b"R"  # before any module is sent
    finally:
        worker.close()


def test_objects_pack_and_unpack():
    blob = jit.pack_objects([b"\x7fELF one", b"\x7fELF two!"])
    assert jit.unpack_objects(blob) == [b"\x7fELF one", b"\x7fELF two!"]
    assert jit.unpack_objects(b"\x7fELF single") == [b"\x7fELF single"]
    for cut in (blob[:-1], blob[:20], blob[: len(b"diffc-objects\0") + 3], blob + b"x"):
        with pytest.raises(ValueError):
            jit.unpack_objects(cut)


@pytest.mark.parametrize("worker", ["", "off", "0"])
def test_units_give_the_same_numbers_here_and_from_the_cache(monkeypatch, tmp_path, worker):
    monkeypatch.setenv("DIFFC_LLVM_WORKER", worker)
    monkeypatch.setenv("DIFFC_CACHE", "1")
    monkeypatch.setenv("DIFFC_CACHE_DIR", str(tmp_path))
    vg, (p, x) = long_gradient()
    native, _ = vg.compiled(*vg.signature(p, x))
    assert len(jit.unpack_objects(native.compiled.object)) == 2
    value, grad = vg(p, x)
    again = long_gradient()[0]  # a new Function: its code comes from the disk cache
    timings = Timings()
    again.compiled(*again.signature(p, x), timings)
    assert "load from cache" in timings and not any(s.startswith("llvm") for s in timings)
    value2, grad2 = again(p, x)
    assert float(value2) == float(value)
    for k in grad:
        np.testing.assert_array_equal(grad2[k], grad[k])
    assert_numpy_value_and_grad((value, grad), p, x, 12)


# Note [No cycle collection while compiling] in pipeline.py


def lowering_sees_the_collector(monkeypatch, wait=None) -> list[bool]:
    """Whether the cycle collector was on at each lowering from now on (each waiting at
    `wait`, a barrier, when given)."""
    seen, real = [], pipeline.lower_program

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        if wait is not None:
            wait.wait(timeout=60)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "lower_program", spy)
    return seen


def test_the_cycle_collector_is_off_while_compiling_and_as_it_was_after(monkeypatch):
    seen = lowering_sees_the_collector(monkeypatch)
    assert gc.isenabled()
    assert diffc.compile("fn f(x) = sum(x * 3.25)\n").f(np.ones(2)) == 6.5
    assert seen == [False] and gc.isenabled()
    with pytest.raises(ShapeError):  # a compile that fails in specialisation
        diffc.compile("fn f(x) = x + [1.0, 2.0]\n").f(np.ones(3))
    assert gc.isenabled()
    gc.disable()  # the user's choice is kept
    try:
        assert diffc.compile("fn f(x) = sum(x * 4.25)\n").f(np.ones(2)) == 8.5
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_long_compile_collects_its_garbage_while_the_worker_works(monkeypatch):
    # the worker replies only once this process has collected: the collection came while it
    # worked, not on the way to LLVM; the collector is on again after, the numbers right
    collected = threading.Event()
    worker_waits_for(monkeypatch, collected)
    real_collect = gc.collect

    def collect(*generation):
        collected.set()
        return real_collect(*generation)

    monkeypatch.setattr(gc, "collect", collect)
    monkeypatch.setenv("DIFFC_LLVM_WORKER", "1000000")
    monkeypatch.setenv("DIFFC_CACHE", "0")
    vg, (p, x) = long_gradient()
    timings = Timings()
    native, _ = vg.compiled(*vg.signature(p, x), timings)
    assert len(jit.unpack_objects(native.compiled.object)) == 2
    assert pipeline.COLLECT_STAGE in timings and "llvm-opt+codegen (worker)" in timings
    assert gc.isenabled()
    assert_numpy_value_and_grad(vg(p, x), p, x, 12)


def test_compiles_in_threads_at_once_leave_the_collector_on(monkeypatch):
    seen = lowering_sees_the_collector(monkeypatch, threading.Barrier(2))
    sources = [f"fn f(x) = sum(x * {k}.75)\n" for k in (5, 6)]
    results = [None, None]

    def run(k):
        results[k] = diffc.compile(sources[k]).f(np.ones(2))

    in_threads(run, [(k,) for k in range(2)])
    assert results == [11.5, 13.5] and seen == [False, False] and gc.isenabled()

"""All llvmlite.binding plumbing: target machine, optimisation pipeline, object code (here or
in the LLVM worker process), MCJIT, text dumps."""

from __future__ import annotations

import ctypes
import functools
import os
import struct
import threading
import time

import llvmlite.binding as llvm

from ..errors import UsageError
from . import llvm_worker
from .vmath import VARIANT_PREFIX

# LLVM's O2: code as fast as O3's on our loops (measured on benchmarks/workloads) in half the
# compile time of a gradient program. DIFFC_OPT=3 (or 1) for experiments.
OPT_LEVEL = int(os.environ.get("DIFFC_OPT", "2"))


@functools.cache
def _init():
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # dead-store elimination walks MemorySSA up to 90 steps per store by default; with the
    # arena's alias scopes (lower/emit.py) it then takes a sixth of the optimiser's time for
    # the stores of our loop nests, and 30 steps find the same dead stores (run times unchanged
    # on benchmarks/workloads, lstm_scan's gradient optimised in 167 instead of 201 ms)
    llvm.set_option("", "-dse-memoryssa-walklimit=30")
    return new_target_machine()


@functools.cache
def blas_available() -> bool:
    """Load OpenBLAS (scipy-openblas64) into the process so that generated code can call it,
    on one thread whatever OPENBLAS_NUM_THREADS says: the runtime's threads run large products
    in pieces (See Note [Products on threads] in prims/linalg.py), and OpenBLAS's own threads
    beside them would be two pools on the same cores (with OPENBLAS_NUM_THREADS=2, which the
    user may have set for NumPy, the value_and_grad of a transformer block on 2 threads took
    9x as long). Its threads are also started when it is loaded, and one that cannot be, under
    `ulimit -v` say, makes OpenBLAS raise SIGINT in our process.

    OpenBLAS's run-time detection takes CPUs it does not know (AMD's Zen 5) for Haswell and
    runs its AVX2 kernels; where the CPU has AVX-512, the SkylakeX kernels run our matrix
    products 1.7x faster (mlp_step's). The kernels are chosen when the library is loaded,
    which importing scipy_openblas64 does; OPENBLAS_CORETYPE set by the user wins."""
    forced = {"OPENBLAS_NUM_THREADS": "1"}
    if "OPENBLAS_CORETYPE" not in os.environ and _has_avx512():
        forced["OPENBLAS_CORETYPE"] = "SkylakeX"
    kept = {name: os.environ[name] for name in forced if name in os.environ}
    os.environ.update(forced)
    try:
        import scipy_openblas64
    except ImportError:
        return False
    finally:
        for name in forced:
            del os.environ[name]
        os.environ.update(kept)
    path = os.path.join(scipy_openblas64.get_lib_dir(), f"lib{scipy_openblas64.get_library()}.so")
    if not os.path.exists(path):
        return False
    # (loaded before, by another library of the process, it kept the thread count it had)
    set_threads = getattr(ctypes.CDLL(path), "scipy_openblas_set_num_threads64_", None)
    if set_threads is not None:
        set_threads(1)
    llvm.load_library_permanently(path)
    return True


def _has_avx512() -> bool:
    features = llvm.get_host_cpu_features()
    return all(features.get(f, False) for f in ("avx512f", "avx512dq", "avx512bw", "avx512vl"))


def host_features() -> str:
    """This CPU's features for LLVM; with AVX-512, 512-bit vectors preferred over the 256 bits
    LLVM's tuning for Intel's cores chooses (See Note [Vector width])."""
    features = llvm.get_host_cpu_features()
    flat = features.flatten()
    if features.get("avx512f", False):
        flat += ",-prefer-256-bit"
    return flat


# Note [Vector width]
# ~~~~~~~~~~~~~~~~~~~
# LLVM's tuning for Intel's cores with AVX-512 (Skylake-SP to Sapphire Rapids, `prefer-256-bit`)
# has its vectorisers emit 256-bit vectors, for the cores of 2017 that slowed their clock for
# 512-bit ones. On the Xeon of docs/performance.md, whose two FMA units take 512-bit vectors,
# the loops of elementwise functions then ran at half the rate of the core: with 512-bit ones,
# over 2^18 elements, one thread, value_and_grad of sum(exp(x)) went from 433 to 279 us (f64)
# and 149 to 96 (f32), of sum(gelu(x)) 1889 -> 1741 (f64) and 504 -> 381 (f32), of softmax
# 929 -> 782 (f32); reductions along rows of 128 to 1024 elements were unchanged within the
# noise. Zen 4 and 5 are not tuned so: there the flag changes nothing. The matrix kernel
# (lower/gemm.py) writes its 512-bit vectors itself.


def new_target_machine():
    """A target machine for this CPU. An MCJIT engine takes ownership of the one it is given,
    so each engine gets its own."""
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=host_features(),
        opt=OPT_LEVEL,
        codemodel="jitdefault",
    )


def optimise(module_text: str, level: int | None = None, loops: bool = True) -> llvm.ModuleRef:
    """Parse, verify and optimise LLVM IR text with the new pass manager: at OPT_LEVEL
    (DIFFC_OPT) or `level`; without the loop vectorisers and unroller when not `loops`."""
    return optimise_module(parse(module_text), level, loops)


def parse(module_text: str) -> llvm.ModuleRef:
    """LLVM IR text as a verified module for this machine."""
    tm = _init()
    mod = llvm.parse_assembly(module_text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    return mod


def optimise_module(mod: llvm.ModuleRef, level: int | None = None, loops: bool = True) -> llvm.ModuleRef:
    """Optimise a parsed module in place (and return it); level and loops as for optimise."""
    tm = _init()
    pto = llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL if level is None else level)
    pto.loop_vectorization = loops
    pto.slp_vectorization = loops
    pto.loop_unrolling = loops
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    # the vector variants that the vectoriser called (lower/vmath.py's _libm_pure) inlined
    # into their loops: no inliner runs after the vectoriser in the pipeline
    if any(f.name.startswith(VARIANT_PREFIX) for f in mod.functions):
        mpm = llvm.create_new_module_pass_manager()
        mpm.add_always_inliner_pass()
        mpm.run(mod, pb)
    return mod


DEFAULT_MODULES_HERE = 32
_here = 0  # modules compiled to object code in this process so far
_here_lock = threading.Lock()


def modules_here() -> int | None:
    """How many modules this process compiles itself before the LLVM worker takes over
    (DIFFC_LLVM_WORKER: a count, or `off` for all of them: None)."""
    text = os.environ.get("DIFFC_LLVM_WORKER", "")
    if not text:
        return DEFAULT_MODULES_HERE
    if text == "off":
        return None
    if not text.isdigit():
        raise UsageError(f"DIFFC_LLVM_WORKER must be a whole number or `off`, got {text!r}")
    return int(text)


def object_code(module_text: str, timings=None) -> bytes:
    """Object code of LLVM IR text, optimised: made in this process for its first modules, then
    by the LLVM worker process, which gives back what llvmlite leaks (See Note [The LLVM
    worker] in lower/llvm_worker.py). The bytes are the same either way. With `timings`
    (pipeline.Timings), the time of each step is added to it."""
    global _here
    limit = modules_here()
    with _here_lock:
        here = limit is None or _here < limit
        _here += here
    if not here:
        t = time.perf_counter()
        try:
            code = llvm_worker.compile(module_text, worker_env())
            if timings is not None:
                timings.add("llvm-opt+codegen (worker)", t)
            return code
        except llvm_worker.CannotStart:
            pass  # compiled here, leak and all
    return object_code_here(module_text, timings)


def worker_env() -> dict[str, str]:
    """The environment of the LLVM worker process: this one's, with this process's O level."""
    return dict(os.environ, DIFFC_OPT=str(OPT_LEVEL))


def start_worker() -> None:
    """Start the LLVM worker process ahead of a long module (its start-up, about 0.1 s, then
    overlaps lowering and the first unit), unless it is off (DIFFC_LLVM_WORKER=off)."""
    if modules_here() is not None:
        llvm_worker.start(worker_env())


def object_code_units(texts: list[str], timings=None, idle=None) -> bytes:
    """Object code of a module given as units (lower/llvm.py, module_units; See Note [Units]
    there): the first made as object_code makes it, the others at the same time by the LLVM
    worker process (the second core's share) from the second on, each sent once the worker
    has started, and here from the last on once the first is done: each unit by whichever
    is free first. All in one blob that Compiled loads; with the worker off
    (DIFFC_LLVM_WORKER=off), all here in turn. One unit is its object code as it is. `idle()`
    is called if this process is done with its units while the worker still compiles one."""
    if len(texts) == 1:
        return object_code(texts[0], timings)
    if modules_here() is None:
        return pack_objects([object_code_here(text, timings) for text in texts])
    done: dict[int, bytes | BaseException] = {}
    owner: dict[int, str] = {}  # who compiles each unit: "here" or "worker"
    taking = threading.Lock()

    def take(k: int, who: str) -> bool:
        """Whether unit k is who's to compile: it is the first to ask (a worker replaced after
        a death asks again)."""
        with taking:
            return owner.setdefault(k, who) == who

    def apart():
        t = time.perf_counter()
        for k in range(1, len(texts)):
            try:
                code = llvm_worker.compile(texts[k], worker_env(), claim=lambda: take(k, "worker"))
            except llvm_worker.CannotStart:
                break  # (this process takes them)
            except BaseException as e:  # raised in the caller's thread
                done[k] = e
                break
            if code is None:  # taken here, and those after it
                break
            done[k] = code
        if timings is not None and done:
            timings.add("llvm-opt+codegen (worker)", t)

    thread = threading.Thread(target=apart, name="diffc-llvm-units", daemon=True)
    thread.start()
    here = {0: object_code(texts[0], timings)}
    for k in reversed(range(1, len(texts))):
        if not take(k, "here"):
            break
        here[k] = object_code(texts[k], timings)
    if len(here) < len(texts):  # (else the worker, still starting, takes none: not waited for)
        if idle is not None and thread.is_alive():
            idle()
        thread.join()
    objects = [here[k] if k in here else done[k] for k in range(len(texts))]
    for got in objects:
        if isinstance(got, BaseException):
            raise got
    return pack_objects(objects)


_OBJECTS = b"diffc-objects\0"  # (object files begin with their own magic: ELF's is b"\x7fELF")
_COUNT = struct.Struct("<Q")


def pack_objects(objects: list[bytes]) -> bytes:
    """Several object files as one blob (what the disk cache keeps of a program)."""
    sizes = b"".join(_COUNT.pack(len(o)) for o in objects)
    return _OBJECTS + _COUNT.pack(len(objects)) + sizes + b"".join(objects)


def unpack_objects(blob: bytes) -> list[bytes]:
    """The object files of a blob of pack_objects, or [blob] for a single object file; a blob
    cut short or of wrong sizes is a ValueError."""
    if not blob.startswith(_OBJECTS):
        return [blob]
    at = len(_OBJECTS) + _COUNT.size
    (n,) = _COUNT.unpack_from(blob, at - _COUNT.size) if len(blob) >= at else (0,)
    if n < 1 or at + _COUNT.size * n > len(blob):
        raise ValueError("a blob of object files cut short")
    sizes = [_COUNT.unpack_from(blob, at + _COUNT.size * k)[0] for k in range(n)]
    at += _COUNT.size * n
    if at + sum(sizes) != len(blob):
        raise ValueError("a blob of object files of the wrong size")
    out = []
    for size in sizes:
        out.append(blob[at : at + size])
        at += size
    return out


def library_object(mod: llvm.ModuleRef) -> bytes:
    """Object code of an optimised module for a shared library (diffc build): position
    independent, for this CPU, linked by the system linker rather than MCJIT."""
    _init()
    target = llvm.Target.from_default_triple()
    tm = target.create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=host_features(),
        opt=OPT_LEVEL,
        reloc="pic",
        codemodel="default",
    )
    return tm.emit_object(mod)


def object_code_here(module_text: str, timings=None) -> bytes:
    """Optimise and code-generate in this process (what the worker runs, too)."""
    t = time.perf_counter()
    mod = optimise(module_text)
    if timings is not None:
        t = timings.add("llvm-opt", t)
    code = _init().emit_object(mod)
    if timings is not None:
        timings.add("llvm-codegen", t)
    return code


def serve_worker() -> None:
    """The LLVM worker process's main loop."""
    llvm_worker.serve(object_code_here)


class Compiled:
    """Machine code in memory, from an optimised module or from its object code made earlier
    (kept in .object, for the disk cache: an object file, or several in a blob of
    pack_objects). It owns its engine, which owns the code: the code is
    freed when the Compiled is (See Note [Freeing machine code])."""

    def __init__(self, mod: llvm.ModuleRef | None = None, object_code: bytes | None = None):
        tm = _init()
        blas_available()  # (the code may call OpenBLAS)
        self.object = object_code if object_code is not None else tm.emit_object(mod)
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), new_target_machine())
        for obj in unpack_objects(self.object):  # (the units of one module: their calls are linked here)
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()
        self.engine.run_static_constructors()

    def address(self, name: str) -> int:
        return self.engine.get_function_address(name)

    def global_address(self, name: str) -> int:
        try:
            return self.engine.get_global_value_address(name)
        except Exception:
            return 0


def assembly(mod: llvm.ModuleRef) -> str:
    return _init().emit_assembly(mod)


# Note [Freeing machine code]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A module is compiled to object code by the target machine, and the engine only loads that
# object code, as it does an entry of the disk cache: the same bytes MCJIT would make from the
# module, but an engine given the module keeps it and its code-generation state, about 800 KB
# for a small program, against 60 KB for one that loaded the object code. Nothing refers back to
# the Compiled from its engine (an object-cache callback that was a bound method of the Compiled
# made a cycle, freed only by the cycle collector), so the code goes when the Compiled does;
# whoever calls into the code keeps the Compiled alive (runtime/call.py's NativeFunction, and
# the direct entries made from it).
#
# What still grows per compile is llvmlite's: each PassBuilder leaks its
# PassInstrumentationCallbacks, with the callbacks every pass-manager run registers in them
# (75 to 95 KB per optimised module, measured with llvmlite 0.50); a PassBuilder cannot be
# reused for a second pipeline. So after the first DIFFC_LLVM_WORKER modules, object_code has
# a child process make the object code (See Note [The LLVM worker] in lower/llvm_worker.py).

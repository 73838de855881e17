"""The Emitter: the API that primitives' lowering rules call to produce LLVM IR.

Lowered values are either LLVM scalars (rank-0 tensors live in registers) or `Arr`, a strided
view of a buffer: views (transpose, slices, windows, indexing) cost no copy. Temporaries come
from one arena per native function, sized when the function is complete.

Control flow of a lowered native function:

    entry:   allocas; arena pointer        (filled last, when the arena size is known)
    body:    ... the function's code ...   any failure: store code/site in ctx, br exit
    exit:    free the arena; ret
"""

from __future__ import annotations

import contextlib
import platform
from dataclasses import dataclass
from math import prod

from llvmlite import ir

from ..errors import DiffcMemoryError, bytes_text
from ..ir.prim import Kind
from ..source import Span
from ..typesys import MAX_BYTES, DType, TensorType

I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()

# ctx: an i64[CTX_WORDS] array shared by every native function of one call; CTX_STACK is the
# lowest frame address recursive code may reach (0: no limit; see runtime/stack.py)
CTX_ERR, CTX_SITE, CTX_A, CTX_B, CTX_DEPTH, CTX_ARENA, CTX_STACK = 0, 1, 2, 3, 4, 5, 6
CTX_SIGINTS = 7  # the count of SIGINTs when the call began (See Note [Interrupts])
CTX_RECORDS = 8  # the live per-call tape records of recursions (See Note [Tape records] in prims/tape.py)
CTX_WORDS = 9
ERR_BOUNDS, ERR_DEPTH, ERR_MEMORY, ERR_STACK = 1, 2, 3, 4
ERR_NEGATIVE = 5  # a count below 0 (iterate's n)
ERR_INTERRUPT = 6
ERR_CALLBACK = 7  # the print callback raised an exception, which the runtime keeps
SIGINTS_SYMBOL = "diffc_sigints"  # an i64 the runtime's SIGINT handler increments
FLUSH_SYMBOL = "diffc_flush_denormal"  # an i64: nonzero, calls flush subnormal floats to zero
MXCSR_FLUSH = 0x8040  # x86-64's MXCSR bits flush-to-zero (15) and denormals-are-zero (6)
X86 = platform.machine() in ("x86_64", "AMD64")
PARALLEL_SYMBOL = "diffc_parallel_for"  # runs a parallel loop on the runtime's threads (Note [Parallel loops])
PIECES_PER_THREAD = 4  # pieces a loop is cut into per thread: a late or slow thread holds no one up
POLL_CHUNK = 1 << 16  # iterations of a cheap loop between two checks for an interrupt
FULL_UNROLL_MAX = 8  # iterations of the longest loop LLVM may unroll in full (See Note [Full unrolling])
FULL_UNROLL_MAX_MOVES = 3  # and of the longest inner loop of a nest that only moves data
FEW_ITERATIONS = 16  # loops of fewer iterations than this never check
ARENA_STACK_LIMIT = 1 << 14  # arenas up to this size live on the stack
RECURSIVE_STACK_LIMIT = 256  # ... in a recursive function, whose frames pile up


def reg_type(dtype: DType) -> ir.Type:
    """The LLVM type a scalar of `dtype` has in registers."""
    return {DType.F64: F64, DType.F32: F32, DType.I64: I64, DType.BOOL: I1}[dtype]


def mem_type(dtype: DType) -> ir.Type:
    """The LLVM type of one element in memory (bool is a byte, as in NumPy)."""
    return I8 if dtype is DType.BOOL else reg_type(dtype)


def scalar_add(em, dtype: DType, a, b) -> ir.Value:
    """a + b, two scalars of `dtype` in registers."""
    return em.b.fadd(a, b) if dtype.is_float else em.b.add(a, b)


def contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


@dataclass
class Arr:
    """A strided view: element (i0, i1, ...) is at ptr[offset + sum(ik * strides[k])]."""

    ptr: ir.Value
    offset: ir.Value
    strides: tuple[int, ...]
    type: TensorType
    owned: bool = False  # its only reader may overwrite it (a loop carry updated in place)

    @property
    def contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.type.shape)


@dataclass
class Lazy:
    """An array not in memory: element idx is computed where it is read. An elementwise
    result read once by another elementwise op or a reduction stays Lazy, so a chain of them
    becomes one loop nest with no temporaries (see Note [Fusion])."""

    type: TensorType
    at: object  # idx (list of i64 values) -> scalar
    crosses: bool = False  # reads an array across its rows (See Note [Tiles])
    uniform: bool = False  # every element is the same (a broadcast scalar): any view of it is free
    work: int = 1  # scalar operations per element, roughly (whether a loop over it is worth threads)
    flat: object = None  # i (the row-major position, i64) -> scalar, where it can be read so (Note [Flat loops])
    across: tuple = ()  # the arrays it reads across their rows at its own index (Note [Tiles])


@dataclass
class Site:
    """A place in the program where native code can fail; its index is stored in ctx."""

    span: Span
    kind: int
    what: str  # a description used in the message, e.g. "index" or "gather index"


TILE = 64  # elements along each side of a tile of a transposing loop nest (See Note [Tiles])
MICRO = 8  # ... and of a micro-tile's: a cache line of f64, half a line of f32
TILED_MIN = 1 << 12  # ... from this many elements of the two axes: below, its code costs LLVM more


class _LoopID(ir.values.MDValue):
    """A loop's metadata node, which names itself first, as LLVM requires of a loop's ID."""

    def descr(self, buf):
        buf += (f"distinct !{{ {', '.join(op.get_reference() for op in [self, *self.operands])} }}", "\n")


def _not_unrolled(ms, vectorised: bool = False) -> list:
    """The attributes of a loop ID that keep LLVM from unrolling the loop; if `vectorised`,
    but for its vector loop, once the vectoriser has made one."""
    if ms.not_unrolled is None:
        ms.not_unrolled = ms.module.add_metadata([ir.MetaDataString(ms.module, "llvm.loop.unroll.disable")])
        # (the attributes the vector loop gets instead of the loop's: none)
        followup = ir.MetaDataString(ms.module, "llvm.loop.vectorize.followup_vectorized")
        ms.vector_loop_free = ms.module.add_metadata([followup])
    return [ms.not_unrolled, ms.vector_loop_free] if vectorised else [ms.not_unrolled]


def _not_vectorised(ms):
    """The attribute of a loop ID that keeps LLVM from vectorising the loop."""
    if ms.not_vectorised is None:
        width = [ir.MetaDataString(ms.module, "llvm.loop.vectorize.width"), ir.Constant(ir.IntType(32), 1)]
        ms.not_vectorised = ms.module.add_metadata(width)
    return ms.not_vectorised


# what a loop that only moves data (a copy, a transpose, a fill, a pad) computes: addresses
_MOVES = {"load", "store", "getelementptr", "phi", "br", "icmp", "select", "add", "sub", "mul", "sdiv", "srem"}


def _loop_instructions(head: ir.Block):
    """The instructions of the loop of this head: its blocks follow it in its function."""
    blocks = head.parent.blocks
    return (instr for block in blocks[blocks.index(head) :] for instr in block.instructions)


def _moves_only(head: ir.Block) -> bool:
    return all(instr.opname in _MOVES for instr in _loop_instructions(head))


def _reorders(head: ir.Block) -> bool:
    """Whether the loop of this head (its blocks follow it in its function) has float arithmetic
    whose order LLVM may choose (reassoc, nsz: sums, products, max and min that it vectorises
    as reductions): unrolled in full or vectorised, its result would differ in the last bits."""
    return any({"reassoc", "nsz"} & set(getattr(instr, "flags", ())) for instr in _loop_instructions(head))


def _as_line(a: Arr) -> Arr:
    """A contiguous view as one axis."""
    return Arr(a.ptr, a.offset, (1,), a.type.with_shape((a.type.size,)), a.owned)


def _merge_axes(dst: Arr, views) -> tuple[Arr, list]:
    """dst and the views of its shape (arrays and scalars) with their axes of 1 dropped and each
    run of adjacent axes that every array steps over as one axis merged into it: the same
    elements in the same order, in a shallower nest (See Note [Merged axes])."""
    arrs = [dst] + [v for v in views if isinstance(v, Arr)]
    if any(isinstance(v, Lazy) for v in views) or dst.type.size == 0 or dst.type.rank < 2:
        return dst, views  # (a Lazy view is read by its own axes)
    shape: list[int] = []
    strides: list[list[int]] = [[] for _ in arrs]
    for k, n in enumerate(dst.type.shape):
        if n == 1:
            continue
        if shape and all(s[-1] == a.strides[k] * n for s, a in zip(strides, arrs)):
            shape[-1] *= n
            for s, a in zip(strides, arrs):
                s[-1] = a.strides[k]
        else:
            shape.append(n)
            for s, a in zip(strides, arrs):
                s.append(a.strides[k])
    if len(shape) == dst.type.rank:
        return dst, views
    if not shape:  # one element
        shape, strides = [1], [[0] for _ in arrs]
    merged = iter([Arr(a.ptr, a.offset, tuple(s), a.type.with_shape(shape), a.owned) for a, s in zip(arrs, strides)])
    dst = next(merged)
    return dst, [next(merged) if isinstance(v, Arr) else v for v in views]


def reads_across(values) -> bool:
    """Whether a loop writing rows reads one of `values` across its rows (a transposed view)."""
    return any(
        (isinstance(v, Arr) and v.type.rank >= 2 and v.strides[-1] not in (0, 1)) or (isinstance(v, Lazy) and v.crosses)
        for v in values
    )


def _partner(across, q: int) -> int:
    """The axis a transposing loop nest tiles with the last one, q: the axis along which the
    first array it reads across its rows is contiguous, else the one before q (See Note [Tiles])."""
    for a in across:
        for k in range(q):
            if a.strides[k] == 1 and a.type.shape[k] > 1:
                return k
    return q - 1


def _read_across(v) -> tuple:
    """The arrays a view of the shape being written reads across their rows at its index."""
    if isinstance(v, Arr):
        return (v,) if v.type.rank >= 2 and v.strides[-1] not in (0, 1) else ()
    return v.across if isinstance(v, Lazy) else ()


PARALLEL_MIN = 1 << 16  # elements from which a loop nest writing an array is split among threads
COPY_MIN_BYTES = 256  # a copy of this many bytes or more is a memcpy (See Note [Copies])
COPY_LOOP_MIN_BYTES = 2048  # ... and from this many, a call of the module's copy loop
COPY_SYMBOL = "diffc.copy"  # that loop (See Note [Copies])
SCRATCH_MAX = 1 << 16  # bytes of temporaries a parallel loop's body may take (on each thread's stack)
ARENA_SCRATCH_MAX = 1 << 25  # ... beyond, in the arena: room for a place per iteration, in all
# what a parallel loop may call besides LLVM's intrinsics, the matrix kernels and OpenBLAS (all
# pure functions of their arguments; an inner parallel loop runs on its caller's thread)
SAFE_CALLS = frozenset({"erf", "erff", "tan", "tanf", PARALLEL_SYMBOL, COPY_SYMBOL})


def _free_values(region, outlined, safe, own, arena_slot, exit_block):
    """(the values defined outside the blocks `region` that its instructions use, for the
    function `outlined` to receive them; the region's loads of the arena's pointer; whether it
    checks for Ctrl-C), or None when the blocks cannot run on another thread: they branch out
    of the region (a failure other than Ctrl-C, which every thread would report alike), call
    something that is not a pure function, or write to a slot of the frame that is not one of
    their own (`own`); `safe`: the functions of the module they may call besides SAFE_CALLS
    (the matrix kernels, loop bodies' functions that run on any thread). A load of another
    slot is a free value itself: the caller loads it and passes its value."""
    inside, own = {id(blk) for blk in region}, {id(i) for i in own}
    free: dict[int, ir.Value] = {}
    slot_loads: dict[int, list] = {}  # id(alloca) -> the region's loads of it
    arena_loads, written, interrupted = [], set(), False
    for blk in region:
        for instr in blk.instructions:
            if isinstance(instr, ir.PhiInstr):
                ops = [v for v, _ in instr.incomings] + [blk_ for _, blk_ in instr.incomings]
            elif isinstance(instr, (ir.SwitchInstr, ir.Ret)):
                return None
            else:
                ops = list(instr.operands)
            if isinstance(instr, ir.CallInstr):
                callee = instr.callee
                name = callee.name if isinstance(callee, ir.Function) else ""
                if not callable_anywhere(name, safe):
                    return None
                ops = ops[1:] if ops and ops[0] is callee else ops
            if isinstance(instr, ir.LoadInstr) and isinstance(instr.operands[0], ir.AllocaInstr):
                slot = instr.operands[0]
                if slot is arena_slot:
                    arena_loads.append(instr)
                elif id(slot) not in own:
                    slot_loads.setdefault(id(slot), []).append(instr)
                continue
            if isinstance(instr, ir.StoreInstr) and isinstance(instr.operands[1], ir.AllocaInstr):
                if id(instr.operands[1]) not in own:
                    written.add(id(instr.operands[1]))
            for op in ops:
                if isinstance(op, ir.Block):
                    if op is exit_block and _stores_interrupt(blk):
                        interrupted = True
                    elif id(op) not in inside:
                        return None
                elif isinstance(op, ir.Argument):
                    if op.parent is not outlined:
                        free[id(op)] = op
                elif isinstance(op, ir.Instruction) and id(op.parent) not in inside and id(op) not in own:
                    free[id(op)] = op
    for slot, loads in slot_loads.items():
        if slot in written:
            return None
        free.update((id(ld), ld) for ld in loads)
    return list(free.values()), arena_loads, interrupted


_CASTS = frozenset({"sitofp", "uitofp", "fptosi", "fptoui", "fptrunc", "fpext", "trunc", "zext", "sext"})
_ARITHMETIC = frozenset(
    {"add", "sub", "mul", "sdiv", "udiv", "srem", "urem", "shl", "ashr", "lshr", "and", "or", "xor"}
    | {"fadd", "fsub", "fmul", "fdiv", "frem", "fneg"}
)


def _of_constants(v: ir.Value) -> bool:
    """Whether v is computed by casts and arithmetic from constants alone (a literal exponent
    converted to a float, `y - 1.0` of a power's derivative): See Note [Parallel loops]."""
    if isinstance(v, ir.Constant):
        return True
    if type(v) is ir.CastInstr:
        return v.opname in _CASTS and _of_constants(v.operands[0])
    return type(v) is ir.Instruction and v.opname in _ARITHMETIC and all(_of_constants(o) for o in v.operands)


def _make_again(b: ir.IRBuilder, v: ir.Value, made: dict) -> ir.Value:
    """The instructions computing v (_of_constants) emitted again at b, once each."""
    if isinstance(v, ir.Constant):
        return v
    if id(v) not in made:
        ops = [_make_again(b, o, made) for o in v.operands]
        if type(v) is ir.CastInstr:
            made[id(v)] = getattr(b, v.opname)(ops[0], v.type)
        else:
            method = getattr(b, {"and": "and_", "or": "or_"}.get(v.opname, v.opname))
            made[id(v)] = method(*ops, flags=v.flags)
    return made[id(v)]


def counted_loop(b: ir.IRBuilder, n, body) -> ir.Value:
    """for k in 0 .. n: body(k), n an i64 value; a loop, not unrolled code. Returns k, for
    the blocks body branches to."""
    before = b.block
    head, step, done = (b.function.append_basic_block(x) for x in ("head", "step", "done"))
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(I64)
    k.add_incoming(ir.Constant(I64, 0), before)
    b.cbranch(b.icmp_unsigned("<", k, n), step, done)
    b.position_at_end(step)
    body(k)
    k.add_incoming(b.add(k, ir.Constant(I64, 1)), b.block)
    b.branch(head)
    b.position_at_end(done)
    return k


def _copy_function(module: ir.Module) -> ir.Function:
    """The module's `diffc.copy(dst, src, bytes)`: a loop over the bytes that LLVM vectorises
    and may not make a call of memcpy (See Note [Copies])."""
    fn = module.globals.get(COPY_SYMBOL)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64]), COPY_SYMBOL)
    fn.linkage = "internal"
    set.add(fn.attributes, '"no-builtin-memcpy"')  # (a string attribute, which llvmlite does not list)
    dst, src, n = fn.args
    for a in (dst, src):
        a.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def byte(i):
        b.store(b.load(b.gep(src, [i], source_etype=I8), typ=I8), b.gep(dst, [i], source_etype=I8))

    counted_loop(b, n, byte)
    b.ret_void()
    return fn


def callable_anywhere(name: str, safe) -> bool:
    """Whether a function of this name may be called from any thread (a parallel loop's
    piece): LLVM's intrinsics, OpenBLAS, SAFE_CALLS and the module's functions in `safe`."""
    return name.startswith(("llvm.", "scipy_cblas_")) or name in SAFE_CALLS or name in safe


def _stores_interrupt(blk) -> bool:
    """Whether blk is the failure block of a check for Ctrl-C (poll_interrupt's)."""
    stored = [i.operands[0] for i in blk.instructions if isinstance(i, ir.StoreInstr)]
    return any(isinstance(v, ir.Constant) and v.constant == ERR_INTERRUPT for v in stored)


def _replace(instr: ir.Instruction, old: ir.Value, new: ir.Value):
    """Use `new` in place of `old` in instr (llvmlite keeps a GEP's pointer and indices, and an
    aggregate's operands, apart from its operand list)."""
    instr.replace_usage(old, new)
    for attr in ("pointer", "aggregate", "value"):
        if getattr(instr, attr, None) is old and not isinstance(instr, ir.StoreInstr):
            setattr(instr, attr, new)
    if isinstance(instr, ir.GEPInstr):
        instr.indices = [new if i is old else i for i in instr.indices]


def _replace_all(blocks, old: ir.Value, new: ir.Value):
    for blk in blocks:
        for instr in blk.instructions:
            _replace(instr, old, new)


def _bytes(t: ir.Type) -> int:
    """The size of a value of LLVM type t (scalars, pointers, vectors of them)."""
    if isinstance(t, ir.VectorType):
        return t.count * _bytes(t.element)
    if isinstance(t, ir.IntType):
        return -(-t.width // 8)
    return 4 if isinstance(t, ir.FloatType) else 8


def _work(values) -> int:
    """The scalar operations computing an element of each of `values` takes (Lazy ones)."""
    return sum(v.work for v in values if isinstance(v, Lazy))


def _smaller(b: ir.IRBuilder, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _cheap(body) -> bool:
    """A body made only of elementwise work: evaluating it once per element read is fine."""
    return all(e.prim.cheap and all(_cheap(b) for b in e.bodies()) for e in body.eqns)


RECOMPUTE_BUDGET = 40  # scalar ops per element a value may cost and still be recomputed per reader
RECOMPUTE_MIN_BYTES = 1 << 16  # ... when storing it would cost more than recomputing it


def siblings(body) -> dict[int, list]:
    """id(first) -> [first, *later] for each group of equations of `body` that a primitive's
    lower_together may lower at once, at the first: the same primitive family reading the same
    value with the same params (a softmax's max over the rows of the logits, and the mean
    over the same rows that label smoothing takes). Lowered apart, each would read the value
    from memory again."""
    groups: dict[tuple, list] = {}
    for e in body.eqns:
        if e.prim.lower_together is not None and len(e.inputs) == 1 and not e.prim.effect:
            key = (e.prim.lower_together, e.inputs[0].id, tuple(sorted(e.params.items())))
            groups.setdefault(key, []).append(e)
    return {id(g[0]): g for g in groups.values() if len(g) > 1}


def fusable_values(body, lazy_outs: bool = False) -> set[int]:
    """Ids of the array values of `body` that may stay Lazy, evaluated where they are read:
    made by an elementwise op and read once, in this body, by an op that reads Lazy values; or
    read by up to 3 such ops, none of which reads an element twice (no broadcasting), when the
    value is big and cheap to recompute (memory traffic costs more than the arithmetic); or made
    by a map whose one output is reduced (a reduced comprehension). See Note [Fusion]."""
    uses: dict[int, int] = {}
    readers: dict[int, list] = {}
    for eqn in body.eqns:
        for x in eqn.inputs:
            uses[x.id] = uses.get(x.id, 0) + 1
            readers.setdefault(x.id, []).append(eqn)
    for o in body.outs:
        uses[o.id] = uses.get(o.id, 0) + (1 if lazy_outs else 2)
        readers.setdefault(o.id, []).append("out")
    found, cost = set(), {}
    for eqn in body.eqns:
        o = eqn.outs[0] if eqn.outs else None
        if o is None or o.type.rank == 0:
            continue
        rs = readers.get(o.id, [])
        lazy_reader = all(r == "out" or r.prim.reads_lazy for r in rs)
        if eqn.prim.fusable:
            cost[o.id] = eqn.prim.cost + sum(cost.get(x.id, 0) for x in eqn.inputs if x.id in found)
        if (eqn.prim.fusable or eqn.prim.lazy_result) and lazy_reader and uses.get(o.id) == 1:
            found.add(o.id)
        elif (
            eqn.prim.fusable
            and lazy_reader
            and uses.get(o.id, 0) <= 3
            and cost[o.id] <= RECOMPUTE_BUDGET
            and o.type.nbytes >= RECOMPUTE_MIN_BYTES
            and all(_reads_each_once(r, o) for r in rs)
        ):
            found.add(o.id)
        elif (
            eqn.prim.lazy_when_reduced
            and len(eqn.outs) == 1
            and uses.get(o.id) == 1
            and (rs[0] == "out" or rs[0].prim.kind is Kind.REDUCTION)
        ):
            sub = eqn.params["body"]
            if sub.outs[0].type.rank == 0 or _cheap(sub):
                found.add(o.id)
    return found


def _reads_each_once(reader, v) -> bool:
    """Whether an op reads each element of v at most once: a reduction, or an elementwise op
    whose result has v's shape (no broadcasting of v)."""
    if reader == "out":
        return True
    if reader.prim.kind is Kind.REDUCTION:
        return True
    return reader.prim.fusable and reader.outs[0].type.shape == v.type.shape


class Emitter:
    """Emits one native function; `module` is the lower.llvm.ModuleState it belongs to."""

    def __init__(
        self,
        module,
        fn: ir.Function,
        span: Span,
        *,
        recursive: bool = False,
        external_arena: bool = False,
        arena_arg: ir.Value | None = None,
    ):
        self.m = module
        self.fn = fn
        self.span = span  # the function's, for failures of the function as a whole
        self.entry = fn.append_basic_block("entry")
        self.exit = fn.append_basic_block("exit")
        start = fn.append_basic_block("start")
        self.b = ir.IRBuilder(self.entry)
        self.entry_br = self.b.branch(start)
        self.b.position_at_end(start)
        self.arena_size = 0
        self.arena_slot = self.alloca(PTR, "arena")
        self.ctx = fn.args[0]
        self.recursive = recursive
        self.external_arena = external_arena  # the caller passes the arena in ctx (See Note [Arenas])
        self.arena_arg = arena_arg  # ... or as this argument (a loop body's function: lower/bodies.py)
        self.arena_offset = 0  # where this function's part of that arena starts, in bytes
        self.fuse_next = False
        self.depth = 0  # loops around the code being emitted
        self.rows_apart = False  # in a map's step (lower_body)
        self.staged = None  # (idx, {id(array): its transposed block}, [k, c] in it) in a micro-tile (Note [Tiles])
        # the output buffers of the function, by value id: an op may compute its result there
        self.destinations: dict[int, Arr] = {}
        # views of them stored otherwise (by columns), for the ops that can compute into such a
        # view (a matrix product): See Note [Transposed destinations]
        self.view_destinations: dict[int, Arr] = {}
        # the results of the function being lowered that elementwise ops compute straight
        # into their output buffers (lower/llvm.py, _lower_func; See Note [Views across parts]),
        # and a loop body's results into their rows (`into_rows`)
        self.own_outs: frozenset[int] = frozenset()
        # an alias scope per arena buffer, and the loads and stores that name one (Note [Alias scopes])
        self.scopes: dict[int, int] = {}  # id(buffer pointer) -> scope number
        self.n_scopes = 0
        self.scoped: list[tuple[ir.Instruction, int]] = []

    @property
    def name(self) -> str:
        """The DFL name of the function (`f` for its derivatives `f.jvp`, `f.bwd`... too)."""
        return self.fn.name.removeprefix("dfl.").split(".")[0]

    # --- blocks, allocas, loops ---------------------------------------------------------

    def alloca(self, ty: ir.Type, name: str = "", size: int | None = None) -> ir.Value:
        """An alloca in the entry block (so that mem2reg promotes it)."""
        with self.b.goto_block(self.entry):
            self.b.position_before(self.entry_br)
            return self.b.alloca(ty, size=size, name=name)

    def block(self, name: str) -> ir.Block:
        return self.fn.append_basic_block(name)

    def loop(self, n, body, name: str = "i", in_nest: bool = False, plain: bool = False):
        """for i in 0..n: body(i); n is an int or an i64 value. A loop that runs once per call of
        the program (in the entry, in no other loop) is not unrolled (See Note [Loops run once]),
        nor before vectorisation one of more than FULL_UNROLL_MAX iterations, or an inner loop of
        a nest (`in_nest`) of more than FULL_UNROLL_MAX_MOVES that only moves data, whose
        arithmetic has a fixed order (See Note [Full unrolling]). A `plain` loop LLVM must
        neither vectorise nor unroll (a walk over micro-tiles or a micro-tile's rows, each
        vectorised by rows: Note [Tiles]).

        pre -> head: i = phi(0, i+1); i < n ? body : after
               body: ...; br head
        """
        count = n if isinstance(n, int) else None
        n = self.i64(n) if isinstance(n, int) else n
        b = self.b
        pre = b.block
        head, loop_body, after = self.block(f"{name}.head"), self.block(f"{name}.body"), self.block(f"{name}.end")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=name)
        i.add_incoming(self.i64(0), pre)
        b.cbranch(b.icmp_signed("<", i, n), loop_body, after)
        b.position_at_end(loop_body)
        self.depth += 1
        body(i)
        self.depth -= 1
        i.add_incoming(b.add(i, self.i64(1)), b.block)
        back = b.branch(head)
        ops = []
        if self.depth == 0 and self.external_arena:  # (the entry and its parts run once per call)
            ops = _not_unrolled(self.m)
        elif (
            count is not None
            and count > (FULL_UNROLL_MAX_MOVES if in_nest and _moves_only(head) else FULL_UNROLL_MAX)
            and not _reorders(head)
        ):
            ops = _not_unrolled(self.m, vectorised=True)
        if plain:
            ops = [*_not_unrolled(self.m), _not_vectorised(self.m)]
        if ops:  # (a new loop ID: each loop has its own)
            back.set_metadata("llvm.loop", _LoopID(self.m.module, ops, name=str(len(self.m.module.metadata))))
        b.position_at_end(after)

    def polled_loop(self, n, body, name: str, span, cheap: bool):
        """A loop that may run long (scan, map): it leaves when Ctrl-C is pressed, checking each
        iteration, or every POLL_CHUNK iterations when its steps are cheap (a check in each
        would cost LLVM its unrolling and vectorisation). A loop of a few iterations has no
        check of its own: its parent loop's checks (or its body's) see Ctrl-C."""
        if isinstance(n, int) and n < FEW_ITERATIONS:
            self.loop(n, body, name)
            return
        if not cheap:

            def checked(i):
                self.poll_interrupt(span)
                body(i)

            self.loop(n, checked, name)
            return
        if isinstance(n, int) and n <= POLL_CHUNK:
            self.loop(n, body, name)
            return
        b = self.b
        n = self.i64(n) if isinstance(n, int) else n
        chunks = b.sdiv(b.add(n, self.i64(POLL_CHUNK - 1)), self.i64(POLL_CHUNK))

        def chunk(c):
            self.poll_interrupt(span)
            start = b.mul(c, self.i64(POLL_CHUNK))
            self.loop(_smaller(b, b.sub(n, start), self.i64(POLL_CHUNK)), lambda j: body(b.add(start, j)), name)

        self.loop(chunks, chunk, f"{name}.chunk")

    def parallel_loop(self, n: int, body, name: str = "i"):
        """for i in 0..n: body(i), with the iterations split among the runtime's threads when
        the loop can run on any of them, else an ordinary loop (See Note [Parallel loops]).
        The iterations must be independent: each writes only its own elements, and its
        temporaries."""
        b = self.b
        self.parallel_range(n, lambda lo, hi: self.loop(b.sub(hi, lo), lambda i: body(b.add(lo, i)), name), name)

    def parallel_range(self, n: int, body, name: str = "i", per_thread: int = PIECES_PER_THREAD):
        """body(lo, hi) for pieces lo..hi (i64 values) of 0..n, on the runtime's threads when
        it can run on any of them, else once over 0..n: for a body that does better walking
        its whole piece at once (a scatter-add walks its indices once per piece). The pieces
        must be independent, as parallel_loop's iterations; 0..n is cut into per_thread pieces
        per thread (1: one piece per thread, for a body that pays for each call)."""
        b, module = self.b, self.m.module
        pre, first_new = b.block, len(self.fn.blocks)
        arena, allocas = self.arena_size, {id(i) for i in self.entry.instructions}
        fname = module.get_unique_name(f"{self.fn.name}.par")
        outlined = ir.Function(module, ir.FunctionType(VOID, [PTR, I64, I64]), fname)
        outlined.scope = self.fn.scope  # (one namespace: the blocks move over as they are)
        outlined.linkage = "internal"
        env, lo, hi = outlined.args
        for a, a_name in zip(outlined.args, ("env", "lo", "hi")):
            a.name = a_name
        start = self.block(f"{name}.par")
        b.position_at_end(start)
        body(lo, hi)
        end = b.block
        region = self.fn.blocks[first_new:]
        own = [i for i in self.entry.instructions if id(i) not in allocas]  # the body's allocas
        scratch = self.arena_size - arena  # the body's temporaries: each piece has its own
        safe = self.m.kernels | self.m.thread_safe
        found = _free_values(region, outlined, safe, own, self.arena_slot, self.exit)
        in_arena = found is not None and SCRATCH_MAX < scratch and n * scratch <= ARENA_SCRATCH_MAX
        if in_arena:
            self.arena_size = arena + n * scratch  # a place in the arena for each piece (below)
        elif found is None or scratch > SCRATCH_MAX:
            del module.globals[outlined.name]
            for blk in region:  # an ordinary loop, over 0..n
                for instr in blk.instructions:
                    _replace(instr, lo, self.i64(0))
                    _replace(instr, hi, self.i64(n))
            b.position_at_end(pre)
            b.branch(start)
            b.position_at_end(end)
            return
        free, arena_loads, interrupted = found
        made = [v for v in free if _of_constants(v)]  # made again in the piece (Note [Parallel loops])
        free = [v for v in free if not _of_constants(v)]
        b.ret_void()
        del self.fn.blocks[first_new:]
        head = ir.Block(outlined, f"{name}.env")
        outlined.blocks = [head] + region
        if interrupted:  # a piece that sees Ctrl-C stops; the caller then leaves (check_failed)
            stop = ir.Block(outlined, f"{name}.stop")
            ir.IRBuilder(stop).ret_void()
            outlined.blocks.append(stop)
            _replace_all(region, self.exit, stop)
        for blk in region:
            blk.parent = outlined
        self.entry.instructions = [i for i in self.entry.instructions if id(i) in allocas]
        for instr in own:
            instr.parent = head
        head.instructions = own
        inner = ir.IRBuilder(head)
        inner.position_at_end(head)
        remade: dict[int, ir.Value] = {}
        for v in made:
            _replace_all(region, v, _make_again(inner, v, remade))
        if in_arena:
            b.position_at_end(pre)
            free.append(b.load(self.arena_slot))  # (the arena's pointer, passed last)
        elif arena_loads:
            buf = inner.alloca(ir.ArrayType(I8, scratch), name="par.arena")
            buf.align, buf.type = 64, PTR  # (llvmlite types an alloca's pointer: geps of it would be too)
            base = inner.gep(buf, [self.i64(-arena)], source_etype=I8)  # (the body's offsets start at `arena`)
            for ld in arena_loads:
                ld.parent.instructions.remove(ld)
                _replace_all(region, ld, base)
        offsets = [0]
        for v in free:
            offsets.append(offsets[-1] + -(-_bytes(v.type) // 8) * 8)
        b.position_at_end(pre)
        frame = self.alloca(ir.ArrayType(I8, max(offsets[-1], 8)), "par.frame")
        frame.align, frame.type = 8, PTR
        inside = {id(blk) for blk in region}
        for v, off in zip(free, offsets):
            if isinstance(v, ir.LoadInstr) and id(v.parent) in inside:  # (a slot's: loaded here, its value passed)
                v.parent.instructions.remove(v)
                outer = b.load(v.operands[0], typ=v.type)
            else:
                outer = v
            b.store(outer, b.gep(frame, [self.i64(off)], source_etype=I8)).align = 8
            value = inner.load(inner.gep(env, [self.i64(off)], source_etype=I8), typ=v.type)
            value.align = 8
            _replace_all(region, v, value)
        if in_arena:  # the temporaries of piece lo..hi at the place of iteration lo
            whole = value  # (the arena's pointer, the last value passed)
            place = inner.gep(whole, [inner.mul(lo, self.i64(scratch))], source_etype=I8)
            for ld in arena_loads:
                ld.parent.instructions.remove(ld)
                _replace_all(region, ld, place)
        inner.branch(start)
        args = [outlined, frame, self.i64(n), self.i64(per_thread)]
        self.call_extern(PARALLEL_SYMBOL, VOID, args, [PTR, PTR, I64, I64])
        if interrupted:
            self.check_failed()

    def nest(self, shape, body, name: str = "i", work: int = 1):
        """loop_nest(shape, body) whose iterations are independent, `work` scalar operations
        each: split among threads along the first axis when there is enough work."""
        if len(shape) and shape[0] > 1 and prod(shape) * work >= PARALLEL_MIN:
            self.parallel_loop(shape[0], lambda i: self.loop_nest(shape[1:], lambda idx: body([i] + idx), name), name)
        else:
            self.loop_nest(shape, body, name)

    def loop_nest(self, shape, body, name: str = "i"):
        """Nested loops over every index of `shape`; body(list of i64 indices)."""

        def level(k, idx):
            if k == len(shape):
                body(idx)
            else:
                self.loop(shape[k], lambda i: level(k + 1, idx + [i]), f"{name}{k}", in_nest=k > 0)

        level(0, [])

    def block_of(self, j, per: int, n) -> tuple[ir.Value, ir.Value]:
        """(start, length) of block j of 0..n (an int or an i64 value) cut into blocks of per:
        the last one shorter."""
        b = self.b
        start = b.mul(j, self.i64(per))
        n = self.i64(n) if isinstance(n, int) else n
        return start, _smaller(b, b.sub(n, start), self.i64(per))

    def sum_in_order(self, *values) -> ir.Value:
        """values[0] + values[1] + ..., floats added first to last (partial sums combined in
        an order fixed by the shapes: results independent of the count of threads)."""
        acc = values[0]
        for v in values[1:]:
            acc = self.b.fadd(acc, v)
        return acc

    # --- constants ------------------------------------------------------------------------

    def i64(self, v: int) -> ir.Constant:
        return ir.Constant(I64, int(v))

    def const(self, dtype: DType, v) -> ir.Constant:
        if dtype.is_float:
            return ir.Constant(reg_type(dtype), float(v))
        return ir.Constant(reg_type(dtype), int(bool(v)) if dtype is DType.BOOL else int(v))

    def constant(self, value, t: TensorType):
        """A known value of type t (the `const` primitive): a scalar in a register, an array in
        a global of the module."""
        if t.rank == 0:
            return self.const(t.dtype, value.item())
        et = mem_type(t.dtype)
        data = [ir.Constant(et, int(x) if not t.dtype.is_float else float(x)) for x in value.reshape(-1)]
        g = ir.GlobalVariable(self.m.module, ir.ArrayType(et, len(data)), name=self.m.module.get_unique_name("const"))
        g.initializer = ir.Constant(ir.ArrayType(et, len(data)), data)
        g.global_constant = True
        g.linkage = "internal"
        return Arr(g, self.i64(0), contiguous_strides(t.shape), t)

    # --- memory ---------------------------------------------------------------------------

    def alloc(self, t: TensorType, scope: int | None = None) -> Arr:
        """A fresh contiguous buffer for a value of type t, from this function's arena, with
        an alias scope of its own or the given one (See Note [Alias scopes])."""
        p = self.alloc_bytes(t.nbytes)
        self.in_scope(p, self.new_scope() if scope is None else scope)
        return Arr(p, self.i64(0), contiguous_strides(t.shape), t)

    def alloc_bytes(self, nbytes: int) -> ir.Value:
        """A pointer to `nbytes` fresh bytes of this function's arena, 64-byte aligned."""
        off = self.arena_size
        self.arena_size += (max(nbytes, 1) + 63) // 64 * 64
        return self.b.gep(self.b.load(self.arena_slot), [self.i64(off)], source_etype=I8)

    def result(self, v) -> Arr:
        """The buffer an op computes its result v into: v's destination (an output buffer, a
        map's row) when it has a contiguous one, else a fresh buffer."""
        dest = self.destinations.get(v.id)
        return dest if dest is not None and dest.contiguous else self.alloc(v.type)

    @contextlib.contextmanager
    def into_rows(self, rows: dict[int, Arr]):
        """Within it, the values `rows` names are computed straight into their buffers (a
        loop's rows, which its body does not read) by whatever op makes them, elementwise ones
        too: no temporary and no copy after."""
        outer = self.destinations, self.own_outs
        self.destinations = {**self.destinations, **rows}
        self.own_outs = self.own_outs | rows.keys()
        try:
            yield
        finally:
            self.destinations, self.own_outs = outer

    def new_scope(self) -> int:
        self.n_scopes += 1
        return self.n_scopes - 1

    def in_scope(self, ptr: ir.Value, scope: int):
        """Accesses through ptr (and views of it) are in the given alias scope."""
        self.scopes[id(ptr)] = scope

    def elem_ptr(self, a: Arr, idx) -> ir.Value:
        flat = a.offset
        for i, s in zip(idx, a.strides):
            if s == 0:
                continue
            flat = self.b.add(flat, i if s == 1 else self.b.mul(i, self.i64(s)))
        return self.b.gep(a.ptr, [flat], source_etype=mem_type(a.type.dtype))

    def load(self, a: Arr, idx) -> ir.Value:
        v = self.b.load(self.elem_ptr(a, idx), typ=mem_type(a.type.dtype))
        self._scope(v, a)
        return self.b.trunc(v, I1) if a.type.dtype is DType.BOOL else v

    def store(self, a: Arr, idx, v: ir.Value):
        if a.type.dtype is DType.BOOL:
            v = self.b.zext(v, I8)
        self._scope(self.b.store(v, self.elem_ptr(a, idx)), a)

    def _scope(self, instr, a: Arr):
        scope = self.scopes.get(id(a.ptr))
        if scope is not None:
            self.scoped.append((instr, scope))

    def load_scalar_ptr(self, p: ir.Value, dtype: DType) -> ir.Value:
        v = self.b.load(p, typ=mem_type(dtype))
        return self.b.trunc(v, I1) if dtype is DType.BOOL else v

    def store_scalar_ptr(self, p: ir.Value, dtype: DType, v: ir.Value):
        if dtype is DType.BOOL:
            v = self.b.zext(v, I8)
        self.b.store(v, p)

    def read(self, v, idx):
        """Element `idx` of a lowered value (a scalar is its own every element)."""
        if isinstance(v, Arr):
            if self.staged is not None and idx is self.staged[0] and id(v) in self.staged[1]:
                return self.load(self.staged[1][id(v)], self.staged[2])
            return self.load(v, idx)
        if isinstance(v, Lazy):
            return v.at(idx)
        return v

    def broadcast_view(self, a, shape) -> Arr | ir.Value:
        """`a` seen with NumPy broadcasting as an array of `shape` (strides 0 where it repeats)."""
        if isinstance(a, Lazy) and a.type.shape == tuple(shape):
            return a
        if isinstance(a, Lazy):
            r = len(shape) - a.type.rank
            dims = a.type.shape
            zero = self.i64(0)
            return Lazy(
                a.type.with_shape(shape),
                lambda idx: a.at([zero if d == 1 else idx[r + k] for k, d in enumerate(dims)]),
                a.crosses,
                a.uniform,
                a.work,
            )
        if not isinstance(a, Arr):
            return a
        r = len(shape) - a.type.rank
        strides = [0] * r + [
            0 if d == 1 and shape[r + k] != 1 else s for k, (d, s) in enumerate(zip(a.type.shape, a.strides))
        ]
        return Arr(a.ptr, a.offset, tuple(strides), a.type.with_shape(shape))

    def copy_into(self, dst: Arr, src):
        """dst[...] = src (a scalar is broadcast). A copy between contiguous buffers of
        COPY_MIN_BYTES or more is one llvm.memcpy, or one per piece when it is split among
        threads: no loop for LLVM to vectorise and unroll (See Note [Copies])."""
        if isinstance(src, Arr) and src.type == dst.type and src.contiguous and dst.contiguous:
            if COPY_MIN_BYTES <= dst.type.nbytes and dst.type.size < PARALLEL_MIN:
                self.memcpy(dst, src)
                return
            if dst.type.size >= PARALLEL_MIN:  # a memcpy of each piece, on the threads
                src_line, dst_line = _as_line(src), _as_line(dst)
                self.parallel_range(dst.type.size, lambda lo, hi: self.memcpy(dst_line, src_line, lo, hi), "cp")
                return
        self.fill(dst, [self.broadcast_view(src, dst.type.shape)], lambda x: x, "cp")

    def memcpy(self, dst: Arr, src: Arr, lo=None, hi=None):
        """dst[...] = src, two contiguous views of one type in buffers apart, as llvm.memcpy or,
        from COPY_LOOP_MIN_BYTES, the module's copy loop (See Note [Copies]): LLVM then needs
        no proof that they do not overlap (in a parallel loop's piece, whose pointers come from
        its env, it has none). With lo and hi (i64 values), elements lo..hi of two views of one
        axis only (a piece of a copy on the threads: the copy loop)."""
        if lo is None:
            ptrs, nbytes = [self.base_ptr(dst), self.base_ptr(src)], self.i64(dst.type.nbytes)
            if dst.type.nbytes < COPY_LOOP_MIN_BYTES:
                move = self.m.module.declare_intrinsic("llvm.memcpy", [PTR, PTR, I64])
                self.b.call(move, ptrs + [nbytes, ir.Constant(I1, 0)])
                return
        else:
            ptrs = [self.elem_ptr(dst, [lo]), self.elem_ptr(src, [lo])]
            nbytes = self.b.mul(self.b.sub(hi, lo), self.i64(dst.type.dtype.itemsize))
        self.b.call(_copy_function(self.m.module), ptrs + [nbytes])

    def force(self, v):
        """`v` in memory: a Lazy value is computed into a buffer; others are returned as they are."""
        if not isinstance(v, Lazy):
            return v
        out = self.alloc(v.type)
        self.copy_into(out, v)
        return out

    def materialise(self, v) -> Arr | ir.Value:
        """A contiguous buffer holding `v` (a no-op for contiguous arrays and scalars)."""
        if isinstance(v, Lazy):
            return self.force(v)
        if not isinstance(v, Arr) or v.contiguous:
            return v
        out = self.alloc(v.type)
        self.copy_into(out, v)
        return out

    def start_ptr(self, a: Arr) -> ir.Value:
        """A pointer to element 0 of a contiguous view: its buffer's own when its offset is 0
        (a function's output, a fresh buffer), else one computed (a map's row)."""
        if isinstance(a.offset, ir.Constant) and a.offset.constant == 0:
            return a.ptr
        return self.base_ptr(a)

    def base_ptr(self, a: Arr) -> ir.Value:
        """Pointer to element 0 of a contiguous view."""
        return self.b.gep(a.ptr, [a.offset], source_etype=mem_type(a.type.dtype))

    def elementwise(self, out_t: TensorType, ins, fn, value=None) -> Arr | ir.Value:
        """out[idx] = fn(*(x[idx] for x in ins)), NumPy broadcasting; scalars stay in registers.
        Computed into memory, a result of the function (its out `value`) goes straight into
        its output buffer (a part's: See Note [Views across parts])."""
        if out_t.rank == 0:
            return fn(*ins)
        views = [self.broadcast_view(x, out_t.shape) for x in ins]
        if self.fuse_next:

            def at(idx):
                return fn(*(self.read(v, idx) for v in views))

            readers = [self.flat_reader(v) for v in views]
            flat = None if None in readers else lambda i: fn(*(r(i) for r in readers))
            across = tuple(a for v in views for a in _read_across(v))
            return Lazy(out_t, at, reads_across(views), work=1 + _work(views), flat=flat, across=across)
        out = self.result(value) if value is not None and value.id in self.own_outs else self.alloc(out_t)
        self.fill(out, views, fn, "ew")
        return out

    def fill(self, dst: Arr, views, fn, name: str):
        """dst[idx] = fn(*(v[idx] for v in views)), the views of dst's shape: one loop over the
        elements when they can all be read by position (See Note [Flat loops]), else a nest."""
        dst, views = _merge_axes(dst, views)
        shape = dst.type.shape
        readers = [self.flat_reader(v) for v in views] if len(shape) > 1 and dst.contiguous else [None]
        if any(r is None for r in readers):
            self.write_loops(dst, views, fn, name)
            return
        line = _as_line(dst)
        body = lambda i: self.store(line, i, fn(*(r(i[0]) for r in readers)))  # noqa: E731
        self.nest((line.type.size,), body, name, max(1, _work(views)))

    def flat_reader(self, v):
        """A function of an element's row-major position giving the element of `v` (a view of
        the shape being written) there, or None when v must be read by axes."""
        if isinstance(v, Lazy):
            return (lambda i: v.at([self.i64(0)] * v.type.rank)) if v.uniform else v.flat
        if not isinstance(v, Arr):
            return lambda i: v
        if v.contiguous:
            line = _as_line(v)
            return lambda i: self.load(line, [i])
        if not any(v.strides):  # one element, broadcast
            return lambda i: self.load(v, [self.i64(0)] * v.type.rank)
        return None

    def write_loops(self, dst: Arr, views, fn, name: str):
        """dst[idx] = fn(*(v[idx] for v in views)) by a loop nest over dst (contiguous): in
        tiles when one of the views is read across its rows (a transpose), so that both sides
        stay in the caches, and the lines of a transposed view are read whole and transposed
        in registers (See Note [Tiles])."""
        shape, work = dst.type.shape, max(1, _work(views))

        def at(idx):
            return fn(*(self.read(v, idx) for v in views))

        q = len(shape) - 1
        across = list({id(a): a for v in views for a in _read_across(v)}.values())
        p = _partner(across, q)
        m = MICRO
        if not reads_across(views) or len(shape) < 2 or min(shape[p], shape[q]) < m or shape[p] * shape[q] < TILED_MIN:
            self.nest(shape, lambda idx: self.store(dst, idx, at(idx)), name, work)
            return
        outer = [k for k in range(len(shape)) if k not in (p, q)]
        staged = [a for a in across if a.strides[p] == 1]
        (n0, n1), b = (shape[p], shape[q]), self.b
        per = TILE // m  # micro-tiles along each side of a tile

        def full_of(lead, r0, c0):
            """The micro-tile at (r0, c0), m x m elements: the staged views' lines read as
            vectors and transposed in registers into buffers the body reads by rows."""
            blocks = {id(a): self.transposed_block(a, lambda k, c: place(lead, r0, c0, k, c), m) for a in staged}

            def element(k, c):
                idx = place(lead, r0, c0, k, c)
                self.staged = (idx, blocks, [k, c])
                self.store(dst, idx, at(idx))
                self.staged = None

            # (by rows: LLVM vectorises each row, never the loop over rows, which would gather)
            row = lambda k: self.loop(m, lambda c: element(k, c), f"{name}mj", in_nest=True)  # noqa: E731
            self.loop(m, row, f"{name}mi", plain=True)

        def part_of(lead, r0, c0, rows, cols):
            def element(k, c):
                idx = place(lead, r0, c0, k, c)
                self.store(dst, idx, at(idx))

            # (element by element: vectorised, either loop would gather or scatter)
            row = lambda k: self.loop(cols, lambda c: element(k, c), f"{name}pj", plain=True)  # noqa: E731
            self.loop(rows, row, f"{name}pi", plain=True)

        def place(lead, r0, c0, k, c):
            idx = [None] * len(shape)
            for axis, i in zip(outer, lead):
                idx[axis] = i
            idx[p], idx[q] = b.add(r0, k), b.add(c0, c)
            return idx

        def micro_tile(lead, back, mi, mj):
            """The micro-tile of rows r0..r0 + m (r0 = mi * m - back, cut by the edges) and
            columns c0..c0 + m."""
            r0, c0 = b.sub(b.mul(mi, self.i64(m)), back), b.mul(mj, self.i64(m))
            first = b.select(b.icmp_signed("<", r0, self.i64(0)), self.i64(0), r0)
            rows = b.sub(_smaller(b, b.add(r0, self.i64(m)), self.i64(n0)), first)
            cols = _smaller(b, b.sub(self.i64(n1), c0), self.i64(m))
            whole = b.and_(b.icmp_signed("==", rows, self.i64(m)), b.icmp_signed("==", cols, self.i64(m)))
            with b.if_else(whole) as (then, otherwise):
                with then:
                    full_of(lead, r0, c0)
                with otherwise:
                    part_of(lead, first, c0, rows, cols)

        def line_start(lead):
            """How far back the micro-tiles start (0..m-1 rows) for the first staged view's
            vectors to be whole cache lines where its rows are (a NumPy array is often 16 bytes
            off a line): a vector across two lines costs both."""
            if not staged:
                return self.i64(0)
            a = staged[0]
            at_zero = b.ptrtoint(self.elem_ptr(a, place(lead, self.i64(0), self.i64(0), self.i64(0), self.i64(0))), I64)
            elements = b.udiv(at_zero, self.i64(a.type.dtype.itemsize))
            return b.urem(elements, self.i64(m))

        # (with staged views, rows of micro-tiles for n0 + m - 1 rows: the first and the last may be partial)
        mrows, mcols = -(-(n0 + m - 1) // m) if staged else -(-n0 // m), -(-n1 // m)

        def tile(lead, back, ti, tj):
            i0, j0 = b.mul(ti, self.i64(per)), b.mul(tj, self.i64(per))
            ni = _smaller(b, b.sub(self.i64(mrows), i0), self.i64(per))
            nj = _smaller(b, b.sub(self.i64(mcols), j0), self.i64(per))
            self.loop(
                ni,
                lambda i: self.loop(
                    nj, lambda j: micro_tile(lead, back, b.add(i0, i), b.add(j0, j)), f"{name}tj", plain=True
                ),
                f"{name}ti",
                plain=True,
            )

        trows, tcols = -(-mrows // per), -(-mcols // per)

        def tiles(lead):
            def row_of_tiles(ti):
                back = line_start(lead)
                self.loop(tcols, lambda tj: tile(lead, back, ti, tj), f"{name}Tj")

            if lead or n0 * n1 * work < PARALLEL_MIN:
                self.loop(trows, row_of_tiles, f"{name}Ti")
            else:
                self.parallel_loop(trows, row_of_tiles, f"{name}Ti")

        if outer:
            self.nest(tuple(shape[k] for k in outer), tiles, f"{name}o", n0 * n1 * work)
        else:
            tiles([])

    def transposed_block(self, v: Arr, place, m: int) -> Arr:
        """An m x m buffer (in the frame) holding v[place(k, c)] at [k, c], for a view v read
        along k: its m lines, one per c, are loaded as vectors and transposed by shuffles, in
        log2(m) rounds that each swap the off-diagonal blocks of a size (See Note [Tiles])."""
        b, et = self.b, mem_type(v.type.dtype)
        vt = ir.VectorType(et, m)
        lines = []
        for c in range(m):
            ld = b.load(self.elem_ptr(v, place(self.i64(0), self.i64(c))), typ=vt)
            ld.align = v.type.dtype.itemsize
            self._scope(ld, v)
            lines.append(ld)
        d = m // 2
        while d:
            for r in range(m):
                if r & d:
                    continue
                lo, hi = lines[r], lines[r + d]
                mask_lo = [k if not k & d else m + k - d for k in range(m)]
                mask_hi = [k + d if not k & d else m + k for k in range(m)]
                lines[r] = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(ir.IntType(32), m), mask_lo))
                lines[r + d] = b.shuffle_vector(lo, hi, ir.Constant(ir.VectorType(ir.IntType(32), m), mask_hi))
            d //= 2
        buf = self.alloca(ir.ArrayType(et, m * m), "tr")
        buf.align = 64
        buf.type = PTR
        for k in range(m):
            b.store(lines[k], b.gep(buf, [self.i64(k * m)], source_etype=et)).align = 64
        return Arr(buf, self.i64(0), (m, 1), v.type.with_shape((m, m)))

    # --- calls and failures ---------------------------------------------------------------

    def call_extern(self, name: str, ret: ir.Type, args, arg_types=None) -> ir.Value:
        fn = self.m.declare(name, ret, arg_types or [a.type for a in args])
        return self.b.call(fn, args)

    def intrinsic(self, name: str, ty: ir.Type, args) -> ir.Value:
        fn = self.m.module.declare_intrinsic(name, [ty])
        return self.b.call(fn, args)

    def ctx_ptr(self, word: int) -> ir.Value:
        return self.b.gep(self.ctx, [self.i64(word)], source_etype=I64)

    def fail_if(self, cond: ir.Value, site: Site, a=None, b=None, unlikely: bool = False):
        """If cond holds: record the failure (site, a, b) in ctx and leave the function."""
        bad, ok = self.block("fail"), self.block("ok")
        br = self.b.cbranch(cond, bad, ok)
        if unlikely:
            br.set_weights([1, 1 << 20])
        self.b.position_at_end(bad)
        sid = self.m.add_site(site)
        for word, val in ((CTX_ERR, self.i64(site.kind)), (CTX_SITE, self.i64(sid)), (CTX_A, a), (CTX_B, b)):
            if val is not None:
                self.b.store(val, self.ctx_ptr(word))
        self.leave()
        self.b.position_at_end(ok)

    def check_failed(self, interrupt_only: bool = False):
        """After a call to another native function: leave if it failed. `interrupt_only`: the
        callee can fail only when Ctrl-C is pressed, which the failure block says again (the
        same code), so that the call may be made in a parallel loop's piece, whose failure
        blocks must say so (See Note [Parallel loops])."""
        err = self.b.load(self.ctx_ptr(CTX_ERR), typ=I64)
        bad, ok = self.block("failed"), self.block("ok")
        self.b.cbranch(self.b.icmp_signed("!=", err, self.i64(0)), bad, ok)
        self.b.position_at_end(bad)
        if interrupt_only:
            self.b.store(self.i64(ERR_INTERRUPT), self.ctx_ptr(CTX_ERR))
        self.leave()
        self.b.position_at_end(ok)

    def leave(self):
        """Branch to the exit after a failure (the heap tapes still live are in the call's list
        of records, which its entry frees: See Note [Tape records] in prims/tape.py)."""
        self.b.branch(self.exit)

    def poll_interrupt(self, span: Span):
        """Leave with ERR_INTERRUPT if a SIGINT came since the call began: two loads and a
        branch that is predicted not taken. See Note [Interrupts]."""
        now = self.b.load_atomic(sigints_global(self.m.module), "monotonic", 8, typ=I64)
        start = self.b.load(self.ctx_ptr(CTX_SIGINTS), typ=I64)
        self.fail_if(self.b.icmp_unsigned("!=", now, start), Site(span, ERR_INTERRUPT, "interrupt"), unlikely=True)

    def malloc(self, nbytes: ir.Value, site: Site) -> ir.Value:
        """malloc(nbytes), failing at `site` with the size when there is no memory left."""
        p = self.call_extern("malloc", PTR, [nbytes], [I64])
        self.fail_if(self.b.icmp_unsigned("==", p, ir.Constant(PTR, None)), site, nbytes, unlikely=True)
        return p

    def realloc(self, p: ir.Value, nbytes: ir.Value, site: Site) -> ir.Value:
        """realloc(p, nbytes); when there is no memory left, the call fails at `site` with the
        size, and p, still valid, is freed by the call's entry (a tape record: prims/tape.py)."""
        q = self.call_extern("realloc", PTR, [p, nbytes], [PTR, I64])
        self.fail_if(self.b.icmp_unsigned("==", q, ir.Constant(PTR, None)), site, nbytes, unlikely=True)
        return q

    def checked_index(self, i: ir.Value, n: int, site: Site) -> ir.Value:
        """A dynamic index made non-negative (negative counts from the end) and bounds-checked."""
        j, bad = self.wrapped_index(i, n)
        self.fail_if(bad, site, i, self.i64(n))
        return j

    def wrapped_index(self, i: ir.Value, n: int):
        """(a dynamic index made non-negative, negative counting from the end; whether it is out
        of range for an axis of n)."""
        b = self.b
        j = b.select(b.icmp_signed("<", i, self.i64(0)), b.add(i, self.i64(n)), i)
        return j, b.icmp_unsigned(">=", j, self.i64(n))

    # --- bodies ---------------------------------------------------------------------------

    def lower_body(self, body, args, lazy_outs: bool = False, rows_apart: bool = False) -> list:
        """Emit the equations of `body` with its params bound to `args`; returns its outs
        (in memory or registers; Lazy only where lazy_outs allows it). `rows_apart`: the body
        is a map's step, whose iterations are independent (a loop LLVM vectorises across
        them), so its numbers take the kernels of arrays (See Note [Numbers in a map])."""
        outer, self.rows_apart = self.rows_apart, rows_apart
        try:
            return self._lower_body(body, args, lazy_outs)
        finally:
            self.rows_apart = outer

    def _lower_body(self, body, args, lazy_outs: bool) -> list:
        env = dict(zip(body.params, args))
        fusable = fusable_values(body, lazy_outs)
        self._mark_view_destinations(body)
        together = siblings(body)
        early: dict[int, list] = {}  # the outs of equations lowered with an earlier sibling
        for eqn in body.eqns:
            if id(eqn) in early:
                env.update(zip(eqn.outs, early.pop(id(eqn))))
                continue
            ins = [env[x] for x in eqn.inputs]
            if not eqn.prim.reads_lazy:
                kept = eqn.prim.reads_uniform
                ins = [v if kept and isinstance(v, Lazy) and v.uniform else self.force(v) for v in ins]
            self.fuse_next = eqn.outs and eqn.outs[0].id in fusable
            try:
                group = together.get(id(eqn))
                outs_each = eqn.prim.lower_together(self, group, [ins] * len(group)) if group else None
                if outs_each is None:
                    outs = eqn.prim.lower(self, eqn, ins)
                else:
                    outs = outs_each[0]
                    early.update((id(e), o) for e, o in zip(group[1:], outs_each[1:]))
            finally:
                self.fuse_next = False
            env.update(zip(eqn.outs, outs))
        return [env[o] if lazy_outs else self.force(env[o]) for o in body.outs]

    def _mark_view_destinations(self, body):
        """For each view op (a transpose) whose result has a destination and is its operand's
        only reader, the operand's view destination: that buffer seen as the operand."""
        reads: dict[int, int] = {}
        for x in [x for e in body.eqns for x in e.inputs] + list(body.outs):
            reads[x.id] = reads.get(x.id, 0) + 1
        for e in body.eqns:
            dest = self.destinations.get(e.outs[0].id) if e.prim.operand_destination and e.outs else None
            if dest is not None and dest.contiguous and reads[e.inputs[0].id] == 1:
                x = e.inputs[0]
                self.view_destinations[x.id] = e.prim.operand_destination(dest, x.type, **e.params)

    # --- finishing ------------------------------------------------------------------------

    def finish(self):
        """Close the function: size the arena, free it on exit, return."""
        self._alias_metadata()
        self.b.branch(self.exit)
        b = self.b
        size = self.arena_size
        if size > MAX_BYTES:
            raise DiffcMemoryError(
                f"the arrays of `{self.name}` would take {bytes_text(size)}, more than the"
                f" {bytes_text(MAX_BYTES)} a function's temporaries may take",
                self.span,
            )
        on_stack = size <= (RECURSIVE_STACK_LIMIT if self.recursive else ARENA_STACK_LIMIT)
        if self.external_arena or self.arena_arg is not None:
            on_stack = True  # nothing to free
        with b.goto_block(self.entry):
            b.position_before(self.entry_br)
            if size == 0:
                pass
            elif self.arena_arg is not None:
                b.store(self.arena_arg, self.arena_slot)
            elif self.external_arena:
                base = b.inttoptr(b.load(self.ctx_ptr(CTX_ARENA), typ=I64), PTR)
                if self.arena_offset:
                    base = b.gep(base, [self.i64(self.arena_offset)], source_etype=I8)
                b.store(base, self.arena_slot)
            elif on_stack:
                buf = b.alloca(ir.ArrayType(I8, size), name="arena.buf")
                buf.align = 64
                b.store(buf, self.arena_slot)
        if size and not on_stack:
            self._arena_malloc(size)
        b.position_at_end(self.exit)
        if size and not on_stack:
            self.call_extern("free", VOID, [b.load(self.arena_slot)])
        if self.recursive:
            p = self.ctx_ptr(CTX_DEPTH)
            b.store(b.sub(b.load(p, typ=I64), self.i64(1)), p)
        b.ret_void()

    def _arena_malloc(self, size: int):
        """The arena from malloc, before the body runs: when there is no memory left, the
        failure is recorded and the function returns at once (nothing to free, no depth to
        restore). entry: ...; br check   check: arena == NULL ? no_memory : start"""
        b = self.b
        start = self.entry_br.operands[0]
        check, no_memory = self.block("arena.check"), self.block("arena.none")
        self.entry_br.replace_usage(start, check)
        b.position_at_end(check)
        p = self.call_extern("malloc", PTR, [self.i64(size)], [I64])
        b.store(p, self.arena_slot)
        b.cbranch(b.icmp_unsigned("==", p, ir.Constant(PTR, None)), no_memory, start)
        b.position_at_end(no_memory)
        site = Site(self.span, ERR_MEMORY, f"the arrays of `{self.name}`")
        for word, val in ((CTX_ERR, ERR_MEMORY), (CTX_SITE, self.m.add_site(site)), (CTX_A, size)):
            b.store(self.i64(val), self.ctx_ptr(word))
        b.ret_void()

    def _alias_metadata(self):
        """Each load and store of an arena buffer gets the buffer's alias scope, and says it
        aliases none of the others' (the buffers never overlap): LLVM then vectorises a loop
        that writes one buffer while it reads another without run-time overlap checks."""
        if self.n_scopes < 2 or not self.scoped:
            return
        module = self.m.module
        domain = module.add_metadata([ir.MetaDataString(module, f"diffc.arena.{self.fn.name}")])
        names = [
            module.add_metadata([ir.MetaDataString(module, f"diffc.arena.{self.fn.name}.{k}"), domain])
            for k in range(self.n_scopes)
        ]
        own = [module.add_metadata([n]) for n in names]
        others = [module.add_metadata(names[:k] + names[k + 1 :]) for k in range(len(names))]
        for instr, k in self.scoped:
            instr.set_metadata("alias.scope", own[k])
            instr.set_metadata("noalias", others[k])


def sigints_global(module: ir.Module) -> ir.GlobalVariable:
    """The runtime's count of SIGINTs, declared in `module` (its address is given to MCJIT)."""
    g = module.globals.get(SIGINTS_SYMBOL)
    if g is None:
        g = ir.GlobalVariable(module, I64, SIGINTS_SYMBOL)
    return g


def enter_float_mode(b: ir.IRBuilder, module: ir.Module):
    """Before the program runs: where diffc_flush_denormal is set (diffc.set_flush_denormal),
    this thread's subnormal floats flushed to zero, made and read (See Note [Subnormal
    floats]). Returns what leave_float_mode restores; None off x86-64."""
    if not X86:
        return None
    flag = module.globals.get(FLUSH_SYMBOL) or ir.GlobalVariable(module, I64, FLUSH_SYMBOL)
    # (no branch: with one, LLVM made two calls of the program, and inlined neither)
    slot = b.alloca(I32)
    b.call(_mxcsr(module, "stmxcsr"), [slot])
    old = b.load(slot, typ=I32)
    on = b.icmp_unsigned("!=", b.load_atomic(flag, "monotonic", 8, typ=I64), ir.Constant(I64, 0))
    b.store(b.select(on, b.or_(old, ir.Constant(I32, MXCSR_FLUSH)), old), slot)
    b.call(_mxcsr(module, "ldmxcsr"), [slot])
    return slot, old


def leave_float_mode(b: ir.IRBuilder, module: ir.Module, entered) -> None:
    """After the program: the thread's float mode as enter_float_mode found it."""
    if entered is None:
        return
    slot, old = entered
    b.store(old, slot)
    b.call(_mxcsr(module, "ldmxcsr"), [slot])


def _mxcsr(module: ir.Module, op: str) -> ir.Function:
    name = f"llvm.x86.sse.{op}"
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(VOID, [PTR]), name)


# Note [Subnormal floats]
# ~~~~~~~~~~~~~~~~~~~~~~~
# A float below the smallest normal one (2.2e-308 in f64, 1.2e-38 in f32) is subnormal, and
# Intel's cores compute with one through microcode, 100 cycles and more an operation. The
# cotangents of an RNN's early steps vanish into that range in f32: value_and_grad of the
# rnn family's T200 b64 h256 took 695 ms, PyTorch's 737, JAX's 87.5, because XLA flushes
# subnormals to zero. diffc keeps IEEE arithmetic, as NumPy and PyTorch do, unless
# diffc.set_flush_denormal(True) (or DIFFC_FLUSH_DENORMAL=1) asks, as torch.set_flush_denormal
# does: then each call sets MXCSR's flush-to-zero and denormals-are-zero bits on its thread
# and restores them at its end, and the runtime's workers take the caller's MXCSR for each
# parallel loop (runtime/threads.py); that rnn's value_and_grad then takes 59-64 ms.


def start_interrupts(b: ir.IRBuilder, module: ir.Module, ctx: ir.Value):
    """At the start of a call: ctx[CTX_SIGINTS] = the count of SIGINTs so far."""
    now = b.load_atomic(sigints_global(module), "monotonic", 8, typ=I64)
    b.store(now, b.gep(ctx, [ir.Constant(I64, CTX_SIGINTS)], source_etype=I64))


def free_records_left(b: ir.IRBuilder, module: ir.Module, ctx: ir.Value):
    """After a call: free the tape records of recursions that no reverse read back, which
    only a failure leaves, and empty the list (See Note [Tape records] in prims/tape.py).
    head: p = phi(ctx[CTX_RECORDS], next); p == NULL ? done : free: next = p->next; free(p)"""
    free = module.globals.get("free") or ir.Function(module, ir.FunctionType(VOID, [PTR]), "free")
    first = b.load(b.gep(ctx, [ir.Constant(I64, CTX_RECORDS)], source_etype=I64), typ=PTR)
    pre = b.block
    head, body, done = (b.function.append_basic_block(f"records.{n}") for n in ("head", "free", "done"))
    b.branch(head)
    b.position_at_end(head)
    p = b.phi(PTR)
    p.add_incoming(first, pre)
    b.cbranch(b.icmp_unsigned("==", p, ir.Constant(PTR, None)), done, body)
    b.position_at_end(body)
    nxt = b.load(p, typ=PTR)
    b.call(free, [p])
    p.add_incoming(nxt, body)
    b.branch(head)
    b.position_at_end(done)
    b.store(ir.Constant(I64, 0), b.gep(ctx, [ir.Constant(I64, CTX_RECORDS)], source_etype=I64))  # (for the next call)


# Note [Numbers in a map]
# ~~~~~~~~~~~~~~~~~~~~~~~
# sin, cos and pow of a number take latency's kernels (the branched fdlibm ones, libm's pow):
# in an ODE step or a fold's carry each result waits for the last. In a map's step the numbers
# are a row's, and the steps are independent: the loop over them is vectorised when its body
# has no branch and no call, so they take the branch-free kernels of arrays (lower_body's
# rows_apart, set by prims/map_.py for its step; any other body, a scan's, an if's branch,
# clears it). `sum(map(fn(a) => sin(a), x))` over 262144 elements: 1424 -> 375 us, as `sum(sin(x))`.

# Note [Interrupts]
# ~~~~~~~~~~~~~~~~~~~
# Python's own SIGINT handler only sets a flag that the interpreter reads between bytecodes,
# so native code would run on after Ctrl-C. The runtime installs a C-level handler ahead of
# Python's (runtime/interrupt.py) that increments a process-wide count, diffc_sigints, then
# calls Python's handler. Each call notes the count when it begins (ctx[CTX_SIGINTS]) and the
# code that can run long compares it with the current one: each iteration of a while loop
# (and of its taped form), each call of a recursive function, each iteration of a scan, a map
# or a tape's backward loop whose steps do POLL_WORK scalar ops or more (lower/loops.py), and
# every POLL_CHUNK iterations of one whose steps are cheaper, and never in a loop of fewer than
# FEW_ITERATIONS: the short, innermost loops stay as they were, unrolled and vectorised. When
# the counts differ, the call fails with ERR_INTERRUPT and the runtime raises KeyboardInterrupt.
# A count rather than a flag that someone clears: a call is interrupted by exactly the SIGINTs
# that arrive while it runs, in whichever thread it runs, and a Ctrl-C pressed while Python
# code runs does not fail the next native call. The load is atomic (monotonic, a plain load on
# x86) so that LLVM does not hoist it out of the loop.
#
# Note [Alias scopes]
# ~~~~~~~~~~~~~~~~~~~~
# The function's parameters are `noalias`, but its temporaries all come from one arena, so
# LLVM cannot tell that a store into one temporary leaves another unchanged, and a loop that
# reads one and writes the other is not vectorised (it needs a run-time overlap check, which
# LLVM often gives up on). The arena is carved by a bump allocator that never reuses memory
# within a function, so each buffer gets its own alias scope (scoped-noalias metadata) on the
# loads and stores made through it; accesses through other pointers carry none and are
# assumed to alias anything, as before. A loop's array carry lives in two buffers swapped
# each iteration (lower/loops.py, Slots), reached through pointers loaded at run time: the
# pair shares one scope.
#
# Note [Copies]
# ~~~~~~~~~~~~~~
# A program's copies are mostly a scan's: its carries and what its body's gradient tapes, in
# the body of the loop, dozens of them in a gradient through an ODE solver. As loops, LLVM
# vectorised, unrolled and cleaned up each one: the training step of examples/ode took 0.69 s
# of optimiser for its one long part, and 0.42 s with each copy of 256 bytes or more (its
# [50] vectors) made one llvm.memcpy, which the code generator expands to a few vector moves
# or a call of memcpy, and which runs as fast (the step: 275 vs 271 us). Smaller copies stay
# loops: inside a loop that runs many times (conv_small's [8] carry, in the gradient of its
# comprehension, 4608 times) LLVM forwards their elements from store to load, which it does
# not through a memcpy (18% slower as memcpy). A copy of PARALLEL_MIN elements or more is
# split among threads, each piece one copy: as loops, each piece was a function that LLVM
# vectorised and unrolled (six of them in the char_rnn example's training step, 5% of its
# LLVM time), for no gain at that size.
# From COPY_LOOP_MIN_BYTES on, a copy is a call of the module's own copy loop, `diffc.copy`,
# which LLVM vectorises and, told "no-builtin-memcpy", does not make a memcpy again. glibc's
# memcpy copies such sizes with `rep movsb`, which on this AMD core runs 7-11 times slower
# when the destination is 1-63 bytes past the source modulo 4096: a pad by one f64 element of
# a buffer 4 KiB-aligned in the arena (a slice's cotangent) is one, and took 38 us instead of
# 3.4 for 128 KiB, most of the gradient of `sum((x[1:] - x[:-1]) ** 2)`.


# Note [Flat loops]
# ~~~~~~~~~~~~~~~~~
# An elementwise op or a copy whose result and every operand are contiguous arrays of one shape
# (or scalars, or broadcast single elements) is one loop over the elements, not a nest of one
# loop per axis: element i of each is at its offset + i. A lazy (fused) value carries its own
# reader by position (`Lazy.flat`) when it is made of such operands. A nest over [32, 16, 3, 3]
# was a loop of 3 inside a loop of 3 that LLVM fully unrolled and then vectorised as straight
# code (SLP), each time; as one loop of 4608 it is vectorised once, with one remainder.
# conv_small's forward went from 27 to 18 us and its value_and_grad from 92 to 71 (its Adam
# step and its 3 x 3 kernels' gradients), with fewer lines of IR for LLVM. Broadcasting over
# some axes, transposes and views with gaps keep the nest.
#
# Note [Merged axes]
# ~~~~~~~~~~~~~~~~~~
# Where the nest stays (fill: a copy into a slab of a concat, a transpose, an elementwise op on
# broadcast arrays in memory), it has no loop for an axis of 1, and one loop for each run of
# adjacent axes that the result and every operand step over as one (stride[k] = stride[k + 1] *
# shape[k + 1] in each, a broadcast operand's strides 0 over both): the same elements in the same
# order. nn.pad2d's concats in the convnet example wrote [32, 16, 1, 4] and [32, 16, 4, 4] pieces
# of a [32, 16, 6, 4] image as nests of 4 loops, one of them of a single iteration; each piece
# is now 2 loops over 32 * 16 slabs of 4 to 16 contiguous elements. Its training step's IR
# 6,407 -> 5,893 lines, LLVM's time for it (both units) 0.60 -> 0.54 CPU s, the same bits and
# run time. A lazy (fused) operand is read by its own axes, so its nest keeps them all.


# Note [Loops run once]
# ~~~~~~~~~~~~~~~~~~~~~
# A loop of the entry function or of one of its parts that no other loop encloses runs once per
# call of the program: unrolling it would save a few cycles of loop overhead per call, while its
# copies of the body (a short loop fully unrolled, the remainder of a vectorised loop) are most
# of the code LLVM then optimises and generates. Such a loop carries a loop ID with
# `llvm.loop.unroll.disable`; the loops inside it, and all those of functions that may be called
# many times (recursive ones), are left to LLVM (but see Note [Full unrolling]), and the
# vectoriser still interleaves. On
# the examples' training steps and examples/mlp.dfl: 35% fewer lines of optimised IR, LLVM's
# optimiser 8% and its code generator 15% faster; the workloads and the families ran as fast
# as before (in turns in one process, within 2%).


# Note [Full unrolling]
# ~~~~~~~~~~~~~~~~~~~~~
# Before it vectorises, LLVM unrolls in full every loop of a known count whose copies stay
# under its threshold: the loops of 16 and 17 iterations in the reverse model's scan bodies
# (a sequence's steps, a row of 16), the short rows of the convnet's copies and transposes
# ([32, 16, 1, 4]), each then vectorised again by SLP as straight code; and partly or at run
# time the loops it cannot (char_rnn's). Most of the optimiser's and code generator's work on
# the examples' training steps was on those copies. So these loops carry
# `llvm.loop.unroll.disable`, with an empty `llvm.loop.vectorize.followup_vectorized`: a loop of
# more than FULL_UNROLL_MAX iterations, and an inner loop of a nest (loop_nest) of more than
# FULL_UNROLL_MAX_MOVES that only moves data (_moves_only: loads, stores, addresses; rows of 3,
# the conv family's 3 channels, are 15% faster unrolled); not one of the entry that runs once,
# which is not unrolled at all (Note [Loops run once]). The vector loop the vectoriser makes of
# one gets none of its attributes and is unrolled as before (two vector iterations for 16
# doubles: straight code again, as rnn_scan's scan bodies want), the scalar remainder keeps
# them. Loops of up to FULL_UNROLL_MAX iterations that compute are left to LLVM (a 3 x 3
# kernel: conv_small's gradient is 2.4x slower with those not unrolled, and 1.2x with its
# copies of 8 in a loop, not a nest, not unrolled). So are the loops with arithmetic whose
# order LLVM chooses (reassoc, nsz: sums, products, max and min, which it vectorises as
# reductions): vectorised rather than unrolled, their partial sums would be in other lanes, and
# the results other bits. So every workload and example step gives the same bits as before,
# and the workloads' IR is changed by the first rule only. LLVM CPU for the examples' steps
# (optimiser and code generator, each unit alone, in turns in one process): convnet 0.41 + 0.42
# -> 0.29 + 0.34 s, reverse 0.37 + 0.54 -> 0.28 + 0.31, char_rnn 0.37 + 0.35 -> 0.26 + 0.27.
# Run time, CPU, pinned, in turns: the reverse step 680 -> 510 us, rnn_scan's value_and_grad
# 247-284 -> 238-257 us, lstm_scan's 173-176 -> 165-172, softmax_xent's 3.34 -> 3.03 ms; the
# other workloads and steps as before.


# Note [Tiles]
# ~~~~~~~~~~~~~
# A loop nest that writes a contiguous array row by row while it reads another array down its
# columns (a transpose, `transpose(x) * 2.0`, a permutation that moves the last axis, the
# cotangent of one) touches a new cache line for every element it reads. `write_loops` walks
# such a nest in two levels over the last axis q and its partner p, the axis along which the
# first array read across its rows is contiguous (the one before q for a plain transpose, the
# first for [2, 1, 0]); the other axes are loops around them:
#   - micro-tiles of MICRO x MICRO = 8 x 8 elements, a cache line of f64 each way. Each array
#     read across its rows (a view, or one read by a fused chain: Lazy.across) whose lines run
#     along p is loaded as 8 vectors along p, transposed by shuffles (transposed_block: 3
#     rounds of 8 shuffles that swap off-diagonal blocks) into a block of 8 rows, and the
#     body reads its element from the block (Emitter.staged, while the element is computed).
#     The body stays scalar, and LLVM vectorises it by rows: 8 loads, 24 shuffles, 8 rows
#     computed and stored as vectors where it gathered before. LLVM must neither vectorise
#     nor unroll the loop over a micro-tile's rows and the loops over micro-tiles
#     (loop(plain=True)): with constant trip counts it vectorised them, gathering and
#     scattering, and 8 rows unrolled cost compile time (a fused body 64 times). 16 x 16
#     f32 (a line each way) measured the same, in twice the code: 64 shuffles;
#   - the micro-tiles start where the first such array's lines do (line_start): a NumPy array
#     is often 16 bytes off a line, and a vector across two lines costs both (512 x 512 f64:
#     0.29 -> 0.12-0.16 ms); the micro-tiles cut by the edges go element by element;
#   - tiles of TILE x TILE elements of micro-tiles, whose rows are the threads' work. Each
#     line read or written is used whole by one micro-tile (an f32 line by two neighbours), so
#     the tiles' size and order matter little: 8 to 256, by rows or by columns, measured
#     alike within the noise on 512..4096.
# Only such nests are tiled: where everything is read along rows, tiles cost vectorisation;
# and only from TILED_MIN elements of the two axes: the digits convnet's step has some twenty
# small transposes (8 x 8 planes, 144 x 32), and tiling them all took its IR from 6,800 to
# 9,300 lines and its LLVM time up 35%, for microseconds of run time. With the bound: 7,400
# lines and its LLVM time as before; 64 x 64 f64 2.9 -> 2.6 us, 128 x 128 7.0 -> 4.3 us.
# `transpose(x) * 2.0` f64, one thread, before -> after (copy: `x * 2.0`): 512 x 512 0.47 ->
# 0.11 ms (0.046), 2048 x 2048 17.5 -> 7.4 ms (4.4); the table at 1 and 2 threads, f64 and
# f32, is in docs/performance.md ("Transposing loops").
#
# Note [Arenas]
# ~~~~~~~~~~~~~~~
# Every temporary array of a native function has a static size, so a function's temporaries
# are carved out of one arena sized when the function is complete: small arenas live on the
# stack, large ones are malloc'ed per call. The entry function's arena comes from the runtime
# instead (ctx[CTX_ARENA]), allocated once per compiled signature and reused by every call, so
# a call touches warm memory rather than fresh pages that the kernel must zero on each call.
#
# Note [Fusion]
# ~~~~~~~~~~~~~~~
# Elementwise ops are lowered lazily: when an elementwise result has one reader and that
# reader is elementwise too (or a reduction), no loop is emitted for it; its reader's loop
# computes it in place, one element at a time. So `sum((a - b) ** 2 * w)` is one loop with no
# temporary arrays, which LLVM then vectorises. A value read twice is computed into memory
# once, never recomputed. A map read only by a reduction (a reduced comprehension,
# `sum(for i in 0..n => a[i] * b[i])`) is lazy the same way: its body is evaluated inside the
# reduction's loop, and the comprehension is never stored.


# Note [Parallel loops]
# ~~~~~~~~~~~~~~~~~~~~~
# A loop whose iterations are independent and that does enough work (PARALLEL_MIN scalar
# operations, counted from the elements written and the Lazy values read) runs on all the
# runtime's threads: an elementwise loop nest or a copy (split along its first axis, or its
# rows of tiles when it transposes), the rows of a reduction that keeps its leading axes, the
# blocks of a reduction to one number, and a map's rows. `parallel_loop` emits the loop as
# usual over lo..hi, then moves its blocks into a function of their own, `fn(env, lo, hi)`,
# and calls the runtime's `diffc_parallel_for(fn, env, n, per_thread)` (runtime/threads.py),
# which runs pieces of 0..n on the threads, per_thread pieces per thread (a product's blocks:
# one, as each call of the kernel packs its operands again; See Note [Products on threads] in
# prims/linalg.py). The values the blocks use from the enclosing function
# (pointers, offsets, ctx) are stored in `env`, a frame slot they only read is loaded before
# the call and passed by value, a value computed from constants alone is computed again in the
# piece, where LLVM sees a constant (an exponent of 2 converted to 2.0 passed in `env` made
# `x ** 2` a call of pow per element: 150 times slower than x * x from 65536 elements on),
# the allocas made for the body move with it, and the body's
# arena temporaries come from scratch space on each thread's stack: every piece has its own.
# Temporaries beyond SCRATCH_MAX (a map whose rows each hold attention's [t, t] scores) do not
# fit a thread's stack safely: while the loop's count times them fits ARENA_SCRATCH_MAX, they
# are in the enclosing function's arena instead, which grows by that much. A piece lo..hi
# takes the place of iteration lo (pieces start at different iterations), and its iterations
# reuse it in turn, as a piece's stack scratch. The attention family at b8 t128 d128 f32 on 2
# threads: forward 1.98 -> 1.46 ms, value_and_grad 4.95 -> 4.33 ms (its map over batch and
# heads had run its rows in turn).
#
# A loop that cannot run on another thread stays as it was (or is emitted again, as the
# caller says): one that may fail (a bounds check, a poll for Ctrl-C, malloc), which branches
# to the function's exit; one that calls another native function of the program (it shares
# ctx, the depth count and the arena) or anything but LLVM's intrinsics, a few libm functions,
# the matrix kernels, OpenBLAS and the functions of long loop bodies that cannot fail but by
# Ctrl-C and call nothing else (ms.thread_safe: their arena is carved in the piece; See Note
# [Loop functions] in lower/bodies.py); one that writes a frame slot of the enclosing function; one
# whose temporaries exceed SCRATCH_MAX and do not fit ARENA_SCRATCH_MAX (above). Results
# never depend on the count of threads: a loop's pieces write disjoint elements, and a large
# reduction to one number is cut into blocks fixed by its shape alone (prims/reduce.py,
# _in_blocks), whose results are then combined in order.
# An inner parallel loop inside a piece runs on the piece's thread (the pool is busy).


# Note [Transposed destinations]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A transpose is a view, so a value returned transposed is copied into its output buffer
# across its rows at the end, and the derivative of `a @ transpose(b)` with respect to b is
# such a value: transpose(transpose(a) @ g) (a 784 x 512 copy took 1.2 ms of a 9 ms
# value_and_grad). Before a body is lowered, each view op (a primitive with an
# operand_destination: transpose) whose result has a destination and is the only reader of
# its operand gives that operand a view destination: the buffer seen as the operand, for a
# transpose stored by columns. An op that can compute into such a view does (a
# matrix product computes out^T = b^T @ a^T into the buffer), and the transpose of its result
# is then the output buffer itself, which the function's end does not copy; the others
# ignore view destinations.

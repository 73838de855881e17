"""A matrix-product kernel emitted as LLVM IR, for products of moderate size.

    void diffc_gemm2_<t>(A, a_row_stride, a_col_stride, B, b_row_stride, b_col_stride,
                         C, c_row_stride, M, N, K)

computes C = A @ B for an M x K matrix A and a K x N matrix B of any strides (a transposed B,
g @ W^T in a derivative, is packed from its columns: no copy) and an M x N matrix C whose rows
are contiguous. C is cut into tiles of MR rows by NV vectors of W lanes, each
tile's MR x NV accumulators living in registers across a block of terms: per step of k,
NV vector loads of a row of B, MR broadcasts of a column of A, MR x NV fused multiply-adds.
Columns that do not fill a tile take a tile of two vectors, then of one, then one masked
vector; rows that do not fill one, tiles of one row. The tiles read blocks of B packed for
the caches, and of A in place or packed (See Note [Packing]). With AVX-512 (an 8 x 24 tile
of doubles) unpacked tiles ran at about 120 GFLOP/s on one Zen 5 core for mlp_step's
products, where OpenBLAS reaches 85 with its AVX-512 kernels and 50 with its AVX2 ones; on an
Intel Xeon (Sapphire Rapids class) they ran at 30 where OpenBLAS reaches 65, the packed ones
at 60-90, with their k loop unrolled 80-90 (See Note [Unrolled tiles]). Every matrix-matrix
product of floats is the kernel's (See Note [Kernel or BLAS] in prims/linalg.py).

The kernel is a module of its own, compiled once per process, or loaded from the disk cache
(pipeline.load_kernels), and linked by name: a program that multiplies matrices only declares
it (compiling the kernel into every program would cost 0.3 s of LLVM each time)."""

from __future__ import annotations

import functools
import os

import llvmlite.binding as llvm
from llvmlite import ir

from . import jit

I1, I32, I64, PTR = ir.IntType(1), ir.IntType(32), ir.IntType(64), ir.PointerType()


@functools.cache
def tile() -> tuple[int, int, int]:
    """(vector bytes, rows, vectors) of the register tile for this CPU: 32 zmm registers hold
    24 accumulators, 3 rows of B and a broadcast; 16 ymm or xmm registers, 12."""
    features = llvm.get_host_cpu_features()
    if features.get("avx512f", False):
        return 64, 8, 3
    if features.get("avx", False):
        return 32, 4, 3
    return 16, 4, 2


ZEN4_CACHES = (32 << 10, 1 << 20)  # L1 data and L2 bytes of a core when they cannot be read


@functools.cache
def caches() -> tuple[int, int]:
    """(L1 data, L2) bytes of one core of this CPU: from the C library (sysconf), else from
    Linux's /sys, else Zen 4's."""
    found = []
    for level, name in ((1, "SC_LEVEL1_DCACHE_SIZE"), (2, "SC_LEVEL2_CACHE_SIZE")):
        try:
            size = os.sysconf(name)
        except (ValueError, OSError):
            size = 0
        found.append(size if size > 0 else _sys_cache(level))
    return tuple(f if f > 0 else z for f, z in zip(found, ZEN4_CACHES))


def _sys_cache(level: int) -> int:
    """The size of cpu0's data or unified cache of `level` that Linux lists, or 0."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            with open(f"{base}/{entry}/level") as f_level, open(f"{base}/{entry}/type") as f_type:
                if int(f_level.read()) != level or f_type.read().strip() == "Instruction":
                    continue
            with open(f"{base}/{entry}/size") as f:
                text = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return 0


def blocking(itemsize: int) -> tuple[int, int, int]:
    """(KC, NC, MC): the terms, B's columns and A's rows of the packed blocks (See Note
    [Packing]). A tile's rows of A over KC terms take half of L1, the block of B (KC x NC)
    half of L2, the block of A (MC x KC) a quarter; on Zen 4 (32 KiB, 1 MiB) 256 x 240 and
    128 x 256 for doubles, 512 x 240 and 128 x 512 for floats."""
    vbytes, mr, nv = tile()
    l1, l2 = caches()
    kc = max(16, l1 // 2 // (mr * itemsize))
    nr = nv * vbytes // itemsize
    nc = max(nr, l2 // 2 // (kc * itemsize) // nr * nr)
    mc = max(mr, l2 // 4 // (kc * itemsize) // mr * mr)
    return kc, nc, mc


# A is packed when its steps along k are more than PACK_A_STEP_BYTES apart, or, when a
# panel's column is less than a line, more than PACK_A_NEAR_BYTES with at least PACK_A_COLUMNS
# columns of B (See Note [Packing])
PACK_A_STEP_BYTES, PACK_A_NEAR_BYTES, PACK_A_COLUMNS = 1024, 256, 128
LINE_BYTES = 64
PACK_A_GROUP_BYTES = 256  # a transposed A is packed this many bytes of a row at a time
KEEP_A_BYTES = 8 << 20  # A packed is kept for every block of B's columns up to this size
UNROLL = 4  # terms a step of a tile of MR rows (See Note [Unrolled tiles])
OPT_LEVEL = 1  # LLVM's for the kernel, without its vectorisers and unroller (Note [Unrolled tiles])

SIGNATURE = ir.FunctionType(ir.VoidType(), [PTR, I64, I64, PTR, I64, I64, PTR, I64, I64, I64, I64])
NOALIAS = (0, 3, 6)  # A, B and C


def symbol(elem: ir.Type) -> str:
    """The kernel's name, versioned with its signature (gemm2: B's column stride) so that code
    made for another signature never links to it."""
    return f"diffc_gemm2_{'f64' if isinstance(elem, ir.DoubleType) else 'f32'}"


def declare(module: ir.Module, elem: ir.Type) -> ir.Function:
    """The kernel for elements of type elem (double or float), declared in a program's module."""
    name = symbol(elem)
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, SIGNATURE, name)


def optimised(name: str) -> llvm.ModuleRef:
    """The kernel `name` optimised as it is run (See Note [Unrolled tiles])."""
    return jit.optimise(str(kernel_module(name)), OPT_LEVEL, loops=False)


def kernel_module(name: str) -> ir.Module:
    """The module that defines the kernel `name` (a symbol above)."""
    elem = ir.DoubleType() if name.endswith("f64") else ir.FloatType()
    module = ir.Module(name)
    fn = ir.Function(module, SIGNATURE, name)
    for k in NOALIAS:
        fn.args[k].add_attribute("noalias")
    _Gemm(module, fn, elem).emit()
    return module


class _Gemm:
    """Emits the kernel `fn`: the packed product (See Note [Packing]), and the product element
    by element (`<name>.elements`) that it calls for an empty inner dimension or when malloc
    fails."""

    def __init__(self, module: ir.Module, fn: ir.Function, elem: ir.Type):
        self.module, self.elem = module, elem
        vbytes, self.mr, self.nv = tile()
        self.size = 8 if isinstance(elem, ir.DoubleType) else 4  # one element's bytes
        self.align = self.size
        self.w = vbytes // self.size
        self.kc, self.nc, self.mc = blocking(self.size)
        self.vec = ir.VectorType(elem, self.w)
        self.mask_t = ir.VectorType(I1, self.w)
        suffix = f"v{self.w}{'f64' if isinstance(elem, ir.DoubleType) else 'f32'}"
        self.fma = ir.Function(module, ir.FunctionType(self.vec, [self.vec] * 3), f"llvm.fmuladd.{suffix}")
        scalar = "f64" if isinstance(elem, ir.DoubleType) else "f32"
        self.fma1 = ir.Function(module, ir.FunctionType(elem, [elem] * 3), f"llvm.fmuladd.{scalar}")
        self.mload = ir.Function(
            module, ir.FunctionType(self.vec, [PTR, I32, self.mask_t, self.vec]), f"llvm.masked.load.{suffix}.p0"
        )
        self.mstore = ir.Function(
            module, ir.FunctionType(ir.VoidType(), [self.vec, PTR, I32, self.mask_t]), f"llvm.masked.store.{suffix}.p0"
        )
        self.malloc = ir.Function(module, ir.FunctionType(PTR, [I64]), "malloc")
        self.free = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), "free")
        self.top = fn
        self.by_elements = ir.Function(module, SIGNATURE, f"{fn.name}.elements")
        self.by_elements.linkage = "internal"
        for k in NOALIAS:
            self.by_elements.args[k].add_attribute("noalias")

    def emit(self):
        self.start(self.by_elements)
        self.emit_elements()
        self.start(self.top)
        self.emit_packed()

    def start(self, fn: ir.Function):
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    def i64(self, v: int):
        return ir.Constant(I64, v)

    def loop(self, start, stop, step, body, name: str, partial: bool = False):
        """for i = start; i + step <= stop (i < stop when partial); i += step: body(i), the
        step an int or an i64 value. Returns the first i not run (the phi at the loop's head)."""
        b = self.b
        step = self.i64(step) if isinstance(step, int) else step
        pre = b.block
        head, loop_body, end = (self.fn.append_basic_block(f"{name}.{s}") for s in ("head", "body", "end"))
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, pre)
        cond = b.icmp_signed("<", i, stop) if partial else b.icmp_signed("<=", b.add(i, step), stop)
        b.cbranch(cond, loop_body, end)
        b.position_at_end(loop_body)
        body(i)
        i.add_incoming(b.add(i, step), b.block)
        b.branch(head)
        b.position_at_end(end)
        return i

    def lanes_below(self, rest):
        """The mask of the lanes whose index is below rest (an i64 value)."""
        b = self.b
        lanes = ir.Constant(ir.VectorType(I64, self.w), list(range(self.w)))
        return b.icmp_signed("<", lanes, self.splat(rest))

    def splat(self, x):
        """A vector of W lanes, each x (a scalar value)."""
        v = ir.Constant(ir.VectorType(x.type, self.w), None)
        b = self.b
        return b.shuffle_vector(
            b.insert_element(v, x, ir.Constant(I32, 0)), v, ir.Constant(ir.VectorType(I32, self.w), [0] * self.w)
        )

    def at(self, p, offset):
        return self.b.gep(p, [offset], source_etype=self.elem)

    def columns(self, N, tiles):
        """tiles(j0, nv, mask) over N columns: tiles of NV vectors, then (NV being 3) one of
        two, then of one vector, then one masked vector for the rest. (3 + 1 vectors as 2 + 2
        ran 5-10% slower in f64: the tiles of two are the less efficient.)"""
        b, i64, w = self.b, self.i64, self.w
        j = self.loop(i64(0), N, self.nv * w, lambda j0: tiles(j0, self.nv, None), "jt")
        if self.nv == 3:
            j = self.loop(j, N, 2 * w, lambda j0: tiles(j0, 2, None), "j2")
        j = self.loop(j, N, w, lambda j0: tiles(j0, 1, None), "jv")
        rest = b.sub(N, j)
        with b.if_then(b.icmp_signed(">", rest, i64(0))):
            tiles(j, 1, self.lanes_below(rest))

    def emit_elements(self):
        """C = A @ B element by element, each one chain of fused multiply-adds over k in order,
        as the tiles' lanes (the same bits): the fallback when malloc fails. (It had tiles of
        its own, which were a sixth of the kernel's build for a path that malloc's failure
        alone takes.)"""
        b, i64 = self.b, self.i64
        A, a_rs, a_cs, B, b_rs, b_cs, C, c_rs, M, N, K = self.fn.args
        acc = b.alloca(self.elem)  # in the entry block: one slot, not one per element

        def row(i):
            def element(j):
                b.store(ir.Constant(self.elem, 0), acc)

                def term(k):
                    x = b.load(self.at(A, b.add(b.mul(i, a_rs), b.mul(k, a_cs))), typ=self.elem)
                    y = b.load(self.at(B, b.add(b.mul(k, b_rs), b.mul(j, b_cs))), typ=self.elem)
                    b.store(b.call(self.fma1, [x, y, b.load(acc, typ=self.elem)]), acc)

                self.loop(i64(0), K, 1, term, "ek", partial=True)
                b.store(b.load(acc, typ=self.elem), self.at(C, b.add(b.mul(i, c_rs), j)))

            self.loop(i64(0), N, 1, element, "ej", partial=True)

        self.loop(i64(0), M, 1, row, "ei", partial=True)
        b.ret_void()

    def emit_packed(self):
        """C = A @ B in blocks of KC terms and NC columns of B, MC rows of A, each block packed
        (See Note [Packing])."""
        b = self.b
        A, a_rs, a_cs, B, b_rs, b_cs, C, c_rs, M, N, K = self.fn.args
        i64, w, mr, kc_max, nc_max, mc_max = self.i64, self.w, self.mr, self.kc, self.nc, self.mc
        # A's panels packed (its steps along k far apart, or, when a panel's column is less
        # than a line, a few lines apart with many of B's columns to reuse them), and kept for
        # every block of B's columns after the first when there are several and A is not too
        # large
        far = b.icmp_signed(">", a_cs, i64(PACK_A_STEP_BYTES // self.size))
        if mr * self.size < LINE_BYTES:
            near = b.icmp_signed(">", a_cs, i64(PACK_A_NEAR_BYTES // self.size))
            far = b.or_(far, b.and_(near, b.icmp_signed(">=", N, i64(PACK_A_COLUMNS))))
        m_by_k = b.mul(M, K)
        keep = b.and_(
            b.and_(far, b.icmp_signed(">", N, i64(nc_max))),
            b.icmp_signed("<=", m_by_k, i64(KEEP_A_BYTES // self.size)),
        )
        # K in blocks of equal terms: 784 as 392 + 392, not 768 + 16 (a pass over C for 16
        # terms); N in blocks of whole tiles but the last: 1024 doubles as 264 x 3 + 232, not
        # 336 x 3 + 16 (a pass over A for 16 columns)
        k_step = self.even_step(K, kc_max)
        n_step = self.even_step(N, nc_max, self.nv * w)
        # room for the packed blocks: min(K, KC) rows of min(N rounded up to vectors, NC)
        # columns of B, and min(M, MC) rows of A's block (all of A's rows and terms, kept)
        k_cap = self.smin(K, i64(kc_max))
        n_cap = self.smin(self.round_up(N, w), i64(nc_max))
        m_cap = self.smin(M, i64(mc_max))
        b_elems = self.round_up(b.mul(k_cap, n_cap), 64)
        a_elems = b.select(keep, m_by_k, b.mul(k_cap, m_cap))
        nbytes = b.add(b.mul(b.add(b_elems, a_elems), i64(self.size)), i64(64))
        raw = b.call(self.malloc, [nbytes])
        null = ir.Constant(PTR, None)
        with b.if_else(b.or_(b.icmp_unsigned("==", raw, null), b.icmp_signed("<=", K, i64(0)))) as (then, otherwise):
            with then:
                with b.if_then(b.icmp_unsigned("!=", raw, null)):
                    b.call(self.free, [raw])
                b.call(self.by_elements, list(self.fn.args))
            with otherwise:
                addr = b.ptrtoint(raw, I64)
                aligned = b.and_(b.add(addr, i64(63)), i64(-64))
                bp = b.gep(raw, [b.sub(aligned, addr)], source_etype=ir.IntType(8))
                ap = self.at(bp, b_elems)

                def per_block_of_columns(jc):
                    nc = self.smin(b.sub(N, jc), n_step)

                    def per_block_of_terms(pc):
                        kc = self.smin(b.sub(K, pc), k_step)
                        first = b.icmp_signed("==", pc, i64(0))
                        self.pack_b(self.at(B, b.add(b.mul(pc, b_rs), b.mul(jc, b_cs))), b_rs, b_cs, kc, nc, bp)
                        a_pc = self.at(A, b.mul(pc, a_cs))

                        def tiles_of_rows(a_at, ars, acs, c_at, rows: int):
                            def tiles(j0, nv, mask):
                                width = i64(nv * w)
                                b_at = self.at(bp, b.mul(j0, kc))
                                self.tile(
                                    a_at, ars, acs, b_at, width, self.at(c_at, j0), c_rs, kc, rows, nv, mask, first
                                )

                            self.columns(nc, tiles)

                        def per_block_of_rows(ic):
                            mc = self.smin(b.sub(M, ic), i64(mc_max))
                            full = b.mul(b.sdiv(mc, i64(mr)), i64(mr))
                            a_ic = self.at(a_pc, b.mul(ic, a_rs))
                            c_ic = self.at(C, b.add(b.mul(ic, c_rs), jc))

                            # A's panels packed, or in place (See Note [Unrolled tiles]).
                            # Kept, block (pc, ic) is at pc * M + ic * kc.
                            a_block = b.select(keep, self.at(ap, b.add(b.mul(pc, M), b.mul(ic, kc))), ap)
                            fresh = b.or_(b.not_(keep), b.icmp_signed("==", jc, i64(0)))
                            with b.if_then(b.and_(far, fresh)):
                                self.pack_a(a_ic, a_rs, a_cs, kc, full, a_block)

                            def full_tiles(a_at, panel_step, ars, acs):
                                def tile_of_rows(i0):
                                    c_at = self.at(c_ic, b.mul(i0, c_rs))
                                    tiles_of_rows(self.at(a_at, b.mul(i0, panel_step)), ars, acs, c_at, mr)

                                self.loop(i64(0), full, mr, tile_of_rows, "it")

                            with b.if_else(far) as (packed, in_place):
                                with packed:  # constant strides: the loads' offsets too
                                    full_tiles(a_block, kc, i64(1), i64(mr))
                                with in_place:
                                    full_tiles(a_ic, a_rs, a_rs, a_cs)

                            def row(i0):
                                tiles_of_rows(
                                    self.at(a_ic, b.mul(i0, a_rs)), a_rs, a_cs, self.at(c_ic, b.mul(i0, c_rs)), 1
                                )

                            self.loop(full, mc, 1, row, "ir")

                        self.loop(i64(0), M, mc_max, per_block_of_rows, "ic", partial=True)

                    self.loop(i64(0), K, k_step, per_block_of_terms, "pc", partial=True)

                self.loop(i64(0), N, n_step, per_block_of_columns, "jc", partial=True)
                b.call(self.free, [raw])
        b.ret_void()

    def pack_a(self, src, rs, cs, kc, rows, dst):
        """The rows x kc block of A at src (a multiple of MR rows) into dst, as the panels that
        the tiles read: the panel of the rows from i at dst + i * kc, its kc columns of MR
        elements one after the other. A transposed A (rows 1 apart) is copied along its
        contiguous axis, PACK_A_GROUP_BYTES of a row of A (the columns of several panels) at a
        time; any other, a panel's rows at a time."""
        b, i64, mr = self.b, self.i64, self.mr
        col_t = ir.VectorType(self.elem, mr)

        def by_columns(i0, group=1):
            outs = [self.at(dst, b.mul(b.add(i0, i64(g * mr)), kc)) for g in range(group)]

            def column(k):
                at = b.add(i0, b.mul(k, cs))
                for g in range(group):
                    v = b.load(self.at(src, b.add(at, i64(g * mr))), typ=col_t, align=self.align)
                    b.store(v, self.at(outs[g], b.mul(k, i64(mr))), align=self.align)

            self.loop(i64(0), kc, 1, column, "pak")

        def by_rows(i0):
            starts = [self.at(src, b.mul(b.add(i0, i64(r)), rs)) for r in range(mr)]
            out = self.at(dst, b.mul(i0, kc))

            def column(k):
                v = ir.Constant(col_t, None)
                for r in range(mr):
                    v = b.insert_element(v, b.load(self.at(starts[r], b.mul(k, cs)), typ=self.elem), i64(r))
                b.store(v, self.at(out, b.mul(k, i64(mr))), align=self.align)

            self.loop(i64(0), kc, 1, column, "pak")

        with b.if_else(b.icmp_signed("==", rs, i64(1))) as (then, otherwise):
            with then:
                group = max(1, PACK_A_GROUP_BYTES // (mr * self.size))
                i = self.loop(i64(0), rows, mr * group, lambda i0: by_columns(i0, group), "pag")
                self.loop(i, rows, mr, by_columns, "pai")
            with otherwise:
                self.loop(i64(0), rows, mr, by_rows, "pai")

    def smin(self, x, y):
        return self.b.select(self.b.icmp_signed("<", x, y), x, y)

    def smax(self, x, y):
        return self.b.select(self.b.icmp_signed(">", x, y), x, y)

    def round_up(self, x, unit: int):
        """x (an i64 value) rounded up to a multiple of unit."""
        b, i64 = self.b, self.i64
        return b.mul(b.sdiv(b.add(x, i64(unit - 1)), i64(unit)), i64(unit))

    def even_step(self, total, most: int, unit: int = 1):
        """The step that cuts total (an i64 value) into the fewest blocks of at most `most` (a
        multiple of unit), about equal, each a multiple of unit but the last."""
        b, i64 = self.b, self.i64
        blocks = self.smax(b.sdiv(b.add(total, i64(most - 1)), i64(most)), i64(1))
        return self.round_up(b.sdiv(b.add(total, b.sub(blocks, i64(1))), blocks), unit)

    def pack_b(self, src, rs, cs, kc, nc, dst):
        """The kc x nc block of B at src (B[k, j] at src + k * rs + j * cs) into dst, as the
        panels that the tiles read: the panel of the columns from j (a tile's, of the widths of
        columns()) at dst + j * kc, its kc rows one after the other; the lanes past nc of the
        last vector zero. Contiguous rows: the panels of NV vectors a row of a panel at a
        time (one vector at a time, down the rows, [128, 784] @ [784, 512] f32 was 6% slower).
        The other panels, and any other B (a transposed one, whose columns are contiguous):
        one vector of columns at a time, into its panel, a transposed B element by element,
        each of the vector's columns read along its own stream. (One copy of that code for
        every panel's width: a copy per width was a third of the kernel's build.)"""
        b, i64, w = self.b, self.i64, self.w
        wide = self.nv * w
        in_wide = b.mul(b.sdiv(nc, i64(wide)), i64(wide))  # the columns of panels of NV vectors
        pair = ir.Constant(I1, 0)
        if self.nv == 3:  # then one panel of two vectors, if they fit (columns())
            pair = b.icmp_signed(">=", b.sub(nc, in_wide), i64(2 * w))

        def vector(j0, mask):
            is_wide = b.icmp_signed("<", j0, in_wide)
            is_pair = b.and_(pair, b.icmp_signed("<", j0, b.add(in_wide, i64(2 * w))))
            start = b.select(is_wide, b.sub(j0, b.srem(j0, i64(wide))), b.select(is_pair, in_wide, j0))
            width = b.select(is_wide, i64(wide), b.select(is_pair, i64(2 * w), i64(w)))
            out = self.at(dst, b.add(b.mul(start, kc), b.sub(j0, start)))
            with b.if_else(b.icmp_signed("==", cs, i64(1))) as (then, otherwise):
                with then:

                    def by_vector(k):
                        v = self.load(self.at(src, b.add(b.mul(k, rs), j0)), mask)
                        b.store(v, self.at(out, b.mul(k, width)), align=self.align)

                    self.loop(i64(0), kc, 1, by_vector, "pk")
                with otherwise:
                    last = b.sub(nc, i64(1))
                    # the masked vector's lanes past nc read the last column, then are zeroed
                    cols = [b.add(j0, i64(c)) for c in range(w)]
                    starts = [self.at(src, b.mul(j if mask is None else self.smin(j, last), cs)) for j in cols]
                    zero = ir.Constant(self.vec, None)

                    def by_elements(k):
                        at, v = b.mul(k, rs), zero
                        for lane in range(w):
                            x = b.load(self.at(starts[lane], at), typ=self.elem)
                            v = b.insert_element(v, x, ir.Constant(I32, lane))
                        if mask is not None:
                            v = b.select(mask, v, zero)
                        b.store(v, self.at(out, b.mul(k, width)), align=self.align)

                    self.loop(i64(0), kc, 1, by_elements, "pk")

        def wide_panel(j0):  # contiguous rows: the panel's row, NV vectors, at a time
            def row(k):
                s, d = self.at(src, b.add(b.mul(k, rs), j0)), self.at(dst, b.add(b.mul(j0, kc), b.mul(k, i64(wide))))
                for c in range(self.nv):
                    b.store(self.load(self.at(s, i64(c * w)), None), self.at(d, i64(c * w)), align=self.align)

            self.loop(i64(0), kc, 1, row, "pk")

        contiguous = b.icmp_signed("==", cs, i64(1))
        with b.if_then(contiguous):
            self.loop(i64(0), nc, wide, wide_panel, "pw")
        j = self.loop(b.select(contiguous, in_wide, i64(0)), nc, w, lambda j0: vector(j0, None), "pv")
        rest = b.sub(nc, j)
        with b.if_then(b.icmp_signed(">", rest, i64(0))):
            vector(j, self.lanes_below(rest))

    def tile(self, A, a_rs, a_cs, B, b_rs, C, c_rs, K, mr: int, nv: int, mask, first):
        """C[:mr, :nv*W] = A[:mr, :K] @ B[:K, :nv*W] (the lanes of mask only), accumulated from
        0 (first true) or from C's values (first false), one term after the other. B is a
        packed panel, whose lanes past the mask are zero: its loads need no mask."""
        b, vec = self.b, self.vec
        c_rows = [self.at(C, b.mul(self.i64(r), c_rs)) for r in range(mr)]
        zero = ir.Constant(vec, None)
        entry = b.block
        with b.if_then(b.not_(first)):
            loaded = [[self.load(self.at(c_rows[r], self.i64(c * self.w)), mask) for c in range(nv)] for r in range(mr)]
            from_c = b.block
        init = []
        for r in range(mr):
            row = []
            for c in range(nv):
                phi = b.phi(vec)
                phi.add_incoming(zero, entry)
                phi.add_incoming(loaded[r][c], from_c)
                row.append(phi)
            init.append(row)
        # (tiles of one row are the few rows left, masked ones the few columns)
        unroll = UNROLL if mr == self.mr and mask is None else 1
        k, accs = self.terms(A, a_rs, a_cs, B, b_rs, K, self.i64(0), init, unroll)
        if unroll > 1:
            _, accs = self.terms(A, a_rs, a_cs, B, b_rs, K, k, accs, 1)
        for r in range(mr):
            for c in range(nv):
                p = self.at(c_rows[r], self.i64(c * self.w))
                if mask is None:
                    b.store(accs[r][c], p, align=self.align)
                else:
                    b.call(self.mstore, [accs[r][c], p, ir.Constant(I32, self.align), mask])

    def terms(self, A, a_rs, a_cs, B, b_rs, K, k0, init, unroll: int):
        """The loop of a tile's terms from k0, unroll terms a step while that many remain, from
        the accumulators init: (the first term it did not add, the accumulators)."""
        b, fn, vec, elem = self.b, self.fn, self.vec, self.elem
        pre = b.block
        head, body, end = (fn.append_basic_block(f"k{unroll}.{s}") for s in ("head", "body", "end"))
        b.branch(head)
        b.position_at_end(head)
        k = b.phi(I64)
        k.add_incoming(k0, pre)
        accs = [[b.phi(vec) for _ in row] for row in init]
        for acc_row, init_row in zip(accs, init):
            for acc, x in zip(acc_row, init_row):
                acc.add_incoming(x, pre)
        b.cbranch(b.icmp_signed("<=", b.add(k, self.i64(unroll)), K), body, end)
        b.position_at_end(body)
        new = accs
        for u in range(unroll):
            ku = b.add(k, self.i64(u))
            b_row = b.mul(ku, b_rs)
            bv = [self.load(self.at(B, b.add(b_row, self.i64(c * self.w))), None) for c in range(len(init[0]))]
            a_col = b.mul(ku, a_cs)
            step = []
            for r, acc_row in enumerate(new):
                splat = self.splat(b.load(self.at(A, b.add(b.mul(self.i64(r), a_rs), a_col)), typ=elem))
                step.append([b.call(self.fma, [splat, bv[c], acc]) for c, acc in enumerate(acc_row)])
            new = step
        for acc_row, new_row in zip(accs, new):
            for acc, x in zip(acc_row, new_row):
                acc.add_incoming(x, b.block)
        k.add_incoming(b.add(k, self.i64(unroll)), b.block)
        b.branch(head)
        b.position_at_end(end)
        return k, accs

    def load(self, p, mask):
        if mask is None:
            return self.b.load(p, typ=self.vec, align=self.align)
        return self.b.call(self.mload, [p, ir.Constant(I32, self.align), mask, ir.Constant(self.vec, None)])


# Note [Unrolled tiles]
# ~~~~~~~~~~~~~~~~~~~~~
# A tile of MR rows adds UNROLL terms a step of its loop, then the rest one at a time. One term
# a step, each broadcast of A cost an add to its address (LLVM chains the rows' addresses:
# row r + 1 at row r + A's row stride) and the loop its own counting, some 9 integer
# instructions per 24 fused multiply-adds: with its operands in L1 the loop ran at 85-88% of
# the FMA units' peak on an Intel Xeon (Sapphire Rapids class, 107-111 GFLOP/s of doubles on
# one core), at 4 terms a step 93-100%. Packed panels of A (steps of MR elements) are read with
# constant strides, by a copy of the tiles' code of their own, so that each load's offset is a
# constant and a panel one pointer: [1024, 1024]^T @ [1024, 1024] f64 3-8% faster than the same
# loop reading the packed panels by their strides. In products, in turns with one term a step
# (one thread, against PyTorch's MKL in the same process): 1024^3 f64 77 -> 81-83 GFLOP/s, a^T@b
# 72 -> 83 (MKL 80), f32 158 -> 166-169 (MKL 165); [128, 784] @ [784, 512] f32 150 -> 157 (MKL
# 154-182); attention's [256, 256]^T @ [256, 64] f64 60 -> 67 (MKL 73). Tiles of one row
# (the few rows left over) and masked ones (the few columns) take one term a step. The price is
# the kernel's build, once per machine (the disk cache) or process (without it): at O3 LLVM's
# time went 0.19 -> 0.40 s, and a first program with a product took more than 0.5 s to compile
# (digits/train_mlp.py's loss, 0.59 s); unrolling only the tiles of NV vectors cost f64's
# products of 64 columns (a tile of 2 vectors there) 5-10%. So the kernel, whose loops are
# vectorised and unrolled as written, is optimised at O1 (OPT_LEVEL) without LLVM's
# vectorisers and unroller: 0.29 s, the products as fast (0-5% faster in f64), the loss 0.45 s.

# Note [Packing]
# ~~~~~~~~~~~~~~
# Unpacked, a tile read its B panel (K x NV*W) in place, one row of B per step of k, each a
# page apart for B's of 512 doubles a row: on a Zen core that panel stayed in L2 and was read
# at the core's peak, but on an Intel Xeon (48 KiB L1, 2 MiB L2) the kernel ran at 30 GFLOP/s
# at 128x784x512 f64 against OpenBLAS's 65 (the same panel made contiguous, N = 24: 70-77).
# So the kernel packs, in the loop order of GotoBLAS and BLIS, with its blocks from the caches
# of the CPU it runs on (blocking()): for each block of NC columns of B and KC terms, the block
# of B (KC x NC, half of L2) is copied into panels of a tile's columns, each KC rows one after
# the other (the last vector's lanes past N zero); then for each block of MC rows of A (a
# quarter of L2), each panel of MR rows of A (MR x KC, half of L1) meets every panel of B,
# which streams from L2. A B of any strides is packed into the same panels: a transposed one
# (g @ W^T) from its columns, element by element, instead of being copied whole first (a@b^T
# at 512^3 f64: 1.22 -> 1.09 of the fastest peer's time).
#
# A's panels are read in place while A's steps along k are at most PACK_A_STEP_BYTES apart
# (A by rows, or a transposed A of few rows): a tile's MR rows are MR streams that stay in L1,
# and a copy, one element at a time, paid for itself only when many panels of B reuse it. Packing
# A always cost [1024, 128] @ [128, 128] f64 10% and attention's 32 products [128, 128] @ [128,
# 32] 20-25% (f64 and f32; one thread, CPU time). Where a panel's column (MR elements) is less
# than a line (floats with AVX-512), steps of more than PACK_A_NEAR_BYTES put the panel's lines
# in few sets of L1, which they outgrow over KC terms, and each line is read from L2 by each
# panel it holds a column of: with at least PACK_A_COLUMNS columns of B to reuse it, a packed
# panel was faster ([256, 2048]^T @ [2048, 128 to 1024] f32 5-18%), with fewer slower (64
# columns: 3-6%). With doubles (a line per column) the same rule was as often slower as faster
# (-9% to +9%). A transposed A of more rows is copied into
# panels of MR rows, each KC columns of MR elements, PACK_A_GROUP_BYTES of a row of A at a
# time (8 panels of floats, 4 of doubles) down its columns: the stores in order, each load a
# whole line (across all the panels, each a page from the next, it was 1.3x slower in f32;
# one panel at a time read half lines of floats, each line twice, and packing took a fifth
# of [1024, 2048]^T @ [2048, 256] f32: 122 -> 132-137 GFLOP/s). Read in place, a panel's
# columns are a page apart, all in the same few sets of L1, and [512, 1024]^T @ [1024, 128]
# ran 1.3x slower. A packed A is kept for every block of B's columns after the first, while
# it is at most KEEP_A_BYTES: it was packed again for each (f64 512^3 a^T@b, two blocks of
# columns: 3-8% faster kept). Rows that do not fill a tile are read in place.
# K is cut into blocks of equal terms, at most KC each: 784 floats as 392 + 392, not 768 + 16,
# whose block was a pass over C's tiles for 16 terms ([128, 784] @ [784, 512] f32: 1.06-1.08
# -> 1.03-1.04 of MKL's time). N likewise, in blocks of whole tiles of about equal width: 1024
# doubles as 264 x 3 + 232, not 336 x 3 + 16, whose block was a pass over A for 16 columns
# (1024^3 and [2048, 256] @ [256, 1024], both dtypes: 0-7% faster, in turns).
# The buffer is one malloc per call, sized to the product; when malloc fails, or K is 0, the
# product element by element (`.elements`) runs instead.
#
# The bits are the same as unpacked: each element of C is still one chain of fused
# multiply-adds over k in order from 0, a block of terms starting from the value the block
# before stored in C (a tile loads C unless its block is the first), so neither the blocks
# nor the pieces of a product on the threads change a result.

"""A matrix-product kernel emitted as LLVM IR, for products of moderate size (no packing).

    void diffc_gemm_<t>(A, a_row_stride, a_col_stride, B, b_row_stride, C, c_row_stride, M, N, K)

computes C = A @ B for an M x K matrix A of any strides, a K x N matrix B and an M x N matrix
C whose rows are contiguous. C is cut into tiles of MR rows by NV vectors of W lanes, each
tile's MR x NV accumulators living in registers across the whole K loop: per step of k,
NV vector loads of a row of B, MR broadcasts of a column of A, MR x NV fused multiply-adds.
The B panel (K x NV*W) is reused from cache by every row tile. With AVX-512 (an 8 x 24 tile
of doubles) this runs at about 120 GFLOP/s on one Zen 5 core for mlp_step's products,
where OpenBLAS reaches 85 with its AVX-512 kernels and 50 with its AVX2 ones. Columns that do
not fill a tile take tiles of one vector, then one masked vector; rows that do not fill one,
tiles of one row. Larger products, whose A or whose B panel leaves the L2 cache (A is read
again for every panel), go to OpenBLAS, which packs and blocks (See Note [Kernel or BLAS] in
prims/linalg.py).

The kernel is a module of its own, compiled once per process, or loaded from the disk cache
(pipeline.load_kernels), and linked by name: a program that multiplies matrices only declares
it (compiling the kernel into every program would cost 100 ms of LLVM each time)."""

from __future__ import annotations

import functools

import llvmlite.binding as llvm
from llvmlite import ir

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


def panel(itemsize: int) -> int:
    """The columns of B one pass of the kernel over A covers: a tile's vectors of elements."""
    vbytes, _, nv = tile()
    return nv * vbytes // itemsize


SIGNATURE = ir.FunctionType(ir.VoidType(), [PTR, I64, I64, PTR, I64, PTR, I64, I64, I64, I64])


def symbol(elem: ir.Type) -> str:
    return f"diffc_gemm_{'f64' if isinstance(elem, ir.DoubleType) else 'f32'}"


def declare(module: ir.Module, elem: ir.Type) -> ir.Function:
    """The kernel for elements of type elem (double or float), declared in a program's module."""
    name = symbol(elem)
    if name in module.globals:
        return module.globals[name]
    return ir.Function(module, SIGNATURE, name)


def kernel_module(name: str) -> ir.Module:
    """The module that defines the kernel `name` (a symbol above)."""
    elem = ir.DoubleType() if name.endswith("f64") else ir.FloatType()
    module = ir.Module(name)
    fn = ir.Function(module, SIGNATURE, name)
    for k in (0, 3, 5):
        fn.args[k].add_attribute("noalias")
    _Gemm(module, fn, elem).emit()
    return module


class _Gemm:
    def __init__(self, module: ir.Module, fn: ir.Function, elem: ir.Type):
        self.fn, self.elem = fn, elem
        vbytes, self.mr, self.nv = tile()
        self.align = 8 if isinstance(elem, ir.DoubleType) else 4  # one element's
        self.w = vbytes // self.align
        self.vec = ir.VectorType(elem, self.w)
        self.mask_t = ir.VectorType(I1, self.w)
        suffix = f"v{self.w}{'f64' if isinstance(elem, ir.DoubleType) else 'f32'}"
        self.fma = ir.Function(module, ir.FunctionType(self.vec, [self.vec] * 3), f"llvm.fmuladd.{suffix}")
        self.mload = ir.Function(
            module, ir.FunctionType(self.vec, [PTR, I32, self.mask_t, self.vec]), f"llvm.masked.load.{suffix}.p0"
        )
        self.mstore = ir.Function(
            module, ir.FunctionType(ir.VoidType(), [self.vec, PTR, I32, self.mask_t]), f"llvm.masked.store.{suffix}.p0"
        )
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    def i64(self, v: int):
        return ir.Constant(I64, v)

    def loop(self, start, stop, step: int, body, name: str):
        """for i = start; i + step <= stop; i += step: body(i). Returns the first i not run."""
        b = self.b
        pre = b.block
        head, loop_body, end = (self.fn.append_basic_block(f"{name}.{s}") for s in ("head", "body", "end"))
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<=", b.add(i, self.i64(step)), stop), loop_body, end)
        b.position_at_end(loop_body)
        body(i)
        i.add_incoming(b.add(i, self.i64(step)), b.block)
        b.branch(head)
        b.position_at_end(end)
        return i

    def emit(self):
        b = self.b
        N = self.fn.args[8]
        full = self.nv * self.w
        j = self.loop(self.i64(0), N, full, lambda j0: self.rows(j0, self.nv, None), "jt")
        j = self.loop(j, N, self.w, lambda j0: self.rows(j0, 1, None), "jv")
        rest = b.sub(N, j)
        with b.if_then(b.icmp_signed(">", rest, self.i64(0))):
            lanes = ir.Constant(ir.VectorType(I64, self.w), list(range(self.w)))
            splat = b.shuffle_vector(
                b.insert_element(ir.Constant(ir.VectorType(I64, self.w), None), rest, ir.Constant(I32, 0)),
                ir.Constant(ir.VectorType(I64, self.w), None),
                ir.Constant(ir.VectorType(I32, self.w), [0] * self.w),
            )
            self.rows(j, 1, b.icmp_signed("<", lanes, splat))
        b.ret_void()

    def rows(self, j0, nv: int, mask):
        M = self.fn.args[7]
        i = self.loop(self.i64(0), M, self.mr, lambda i0: self.kernel(i0, j0, self.mr, nv, mask), "it")
        self.loop(i, M, 1, lambda i0: self.kernel(i0, j0, 1, nv, mask), "ir")

    def kernel(self, i0, j0, mr: int, nv: int, mask):
        """C[i0:i0+mr, j0:j0+nv*W] = A[i0:i0+mr, :] @ B[:, j0:j0+nv*W] (the lanes of mask only)."""
        b, fn = self.b, self.fn
        A, a_rs, a_cs, B, b_rs, C, c_rs, _, _, K = fn.args
        elem, vec = self.elem, self.vec
        pre = b.block
        head, body, end = (fn.append_basic_block(f"k.{s}") for s in ("head", "body", "end"))
        b.branch(head)
        b.position_at_end(head)
        k = b.phi(I64)
        k.add_incoming(self.i64(0), pre)
        accs = [[b.phi(vec) for _ in range(nv)] for _ in range(mr)]
        for row in accs:
            for acc in row:
                acc.add_incoming(ir.Constant(vec, None), pre)
        b.cbranch(b.icmp_signed("<", k, K), body, end)
        b.position_at_end(body)
        b_row = b.mul(k, b_rs)
        bv = [
            self.load(b.gep(B, [b.add(b_row, b.add(j0, self.i64(c * self.w)))], source_etype=elem), mask)
            for c in range(nv)
        ]
        a_col = b.mul(k, a_cs)
        for r in range(mr):
            a = b.load(b.gep(A, [b.add(b.mul(b.add(i0, self.i64(r)), a_rs), a_col)], source_etype=elem), typ=elem)
            splat = b.shuffle_vector(
                b.insert_element(ir.Constant(vec, None), a, ir.Constant(I32, 0)),
                ir.Constant(vec, None),
                ir.Constant(ir.VectorType(I32, self.w), [0] * self.w),
            )
            for c in range(nv):
                accs[r][c].add_incoming(b.call(self.fma, [splat, bv[c], accs[r][c]]), body)
        k.add_incoming(b.add(k, self.i64(1)), body)
        b.branch(head)
        b.position_at_end(end)
        for r in range(mr):
            c_row = b.mul(b.add(i0, self.i64(r)), c_rs)
            for c in range(nv):
                p = b.gep(C, [b.add(c_row, b.add(j0, self.i64(c * self.w)))], source_etype=elem)
                if mask is None:
                    b.store(accs[r][c], p, align=self.align)
                else:
                    b.call(self.mstore, [accs[r][c], p, ir.Constant(I32, self.align), mask])

    def load(self, p, mask):
        if mask is None:
            return self.b.load(p, typ=self.vec, align=self.align)
        return self.b.call(self.mload, [p, ir.Constant(I32, self.align), mask, ir.Constant(self.vec, None)])

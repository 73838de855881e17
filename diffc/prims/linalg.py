"""Matrix products: `@` as NumPy's matmul, on vectors, matrices and batches of matrices.

Float matrix-matrix products big enough to pay for a call run the kernel that lower/gemm.py
emits (register tiles of fused multiply-adds over blocks packed for the caches, A and B with
their own strides, so a transposed view costs no copy); big matrix-vector products go to
OpenBLAS's gemv (the scipy-openblas64 package, loaded by lower/jit.py) with the operand's
strides and transpose flag (See Note [Kernel or BLAS]).
Small ones and integer ones are loops that LLVM vectorises, in the order whose innermost loop
is contiguous in what it reads. A matrix of one row or one column is a vector, so that
`x @ W`, `W^T @ x` and their derivatives run at the same speed whichever way round they are
written (See Note [Orientations])."""

from __future__ import annotations

from math import prod

import numpy as np
from llvmlite import ir

from ..errors import ShapeError
from ..lower import gemm, jit
from ..lower.emit import F64, I32, I64, PTR, VOID, Arr, mem_type, reg_type
from ..typesys import DType, broadcast_shapes
from . import ops
from .core import primitive
from .elementwise import _add, _mul


def _matmul_shape(in_types):
    """NumPy's matmul: a vector operand is a matrix of one row (left) or one column (right)
    whose axis is dropped from the result; the axes before the last two are a batch, and
    broadcast."""
    a, b = in_types
    if a.dtype != b.dtype or a.rank == 0 or b.rank == 0:
        raise ShapeError(f"`@` of {a} and {b}")
    k_b = b.shape[0] if b.rank == 1 else b.shape[-2]
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if a.shape[-1] != k_b or batch is None:
        raise ShapeError(f"`@` of {a} and {b}")
    return [a.with_shape(batch + a.shape[-2:-1] + b.shape[-1:] * (b.rank > 1))]


BLAS_MIN_WORK = 8192  # multiply-adds below which a loop beats the call
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
# (the element's type, OpenBLAS's gemv) of the float dtypes
_FLOATS = {DType.F64: (F64, "scipy_cblas_dgemv64_"), DType.F32: (ir.FloatType(), "scipy_cblas_sgemv64_")}


def _matrix_operand(em, a: Arr):
    """(pointer, transposed?, leading dimension) of a matrix view for BLAS, copying it only
    when its strides are neither row-major nor column-major."""
    if not _matrices_in_place(a):
        a = em.materialise(Arr(a.ptr, a.offset, a.strides, a.type))
    p = em.b.gep(a.ptr, [a.offset], source_etype=mem_type(a.type.dtype))
    (s0, s1), cols = a.strides, a.type.shape[1]
    if s1 == 1 and s0 >= max(cols, 1):
        return p, NO_TRANS, s0
    return p, TRANS, s1


def _vector_operand(em, v: Arr):
    if v.strides[0] <= 0:
        v = em.materialise(em.force(Arr(v.ptr, v.offset, v.strides, v.type)))
    return em.b.gep(v.ptr, [v.offset], source_etype=mem_type(v.type.dtype)), v.strides[0]


def _in_pieces(em, m: int, n: int, k: int, block):
    """block(rows, cols, r0, c0) for the result's block at row r0, column c0 (i64 values): once
    for a small product, else for the pieces of a large one on the threads, a thread's
    consecutive pieces in one call (See Note [Products on threads]): the kernel's result does
    not depend on where a product is cut (See Note [Packing] in lower/gemm.py), and each call
    packs its blocks again (in 8 pieces at one thread, 512^3 f64 ran at 0.7x the speed of one
    call)."""
    i64 = em.i64
    if m * n * k < PARALLEL_PRODUCT or max(m, n) < 2 * PRODUCT_BLOCK:
        block(i64(m), i64(n), i64(0), i64(0))
        return
    by_rows = m >= n
    length = m if by_rows else n
    per = max(PRODUCT_BLOCK, -(-length // PRODUCT_BLOCKS))

    def pieces(lo, hi):
        b = em.b
        start, stop = b.mul(lo, i64(per)), b.mul(hi, i64(per))
        size = b.sub(b.select(b.icmp_signed("<", stop, i64(length)), stop, i64(length)), start)
        block(*((size, i64(n), start, i64(0)) if by_rows else (i64(m), size, i64(0), start)))

    em.parallel_range(-(-length // per), pieces, "mm", per_thread=1)


def _gemv_lower(em, a: Arr, b: Arr, dest) -> Arr:
    """A matrix times a vector, or a vector times a matrix, by one OpenBLAS gemv call: out =
    dest()."""
    ta, tb = a.type, b.type
    out = dest()
    pc = em.base_ptr(out)
    fty, gemv = _FLOATS[ta.dtype]
    one, zero = ir.Constant(fty, 1.0), ir.Constant(fty, 0.0)
    i32, i64 = (lambda v: ir.Constant(I32, v)), em.i64
    if ta.rank == 2:  # A @ x
        (pa, trans_a, lda), (px, incx) = _matrix_operand(em, a), _vector_operand(em, b)
        m, n = ta.shape
    else:  # x @ B = B^T x
        (pa, trans_a, lda), (px, incx) = _matrix_operand(em, b), _vector_operand(em, a)
        n, m = tb.shape
        trans_a = TRANS if trans_a == NO_TRANS else NO_TRANS
    # gemv takes the stored matrix's own rows and columns, and a transpose flag
    rows, cols = (m, n) if trans_a == NO_TRANS else (n, m)
    args = [i32(ROW_MAJOR), i32(trans_a), i64(rows), i64(cols), one, pa, i64(lda), px, i64(incx), zero, pc, i64(1)]
    em.call_extern(gemv, VOID, args, [I32, I32, I64, I64, fty, PTR, I64, PTR, I64, fty, PTR, I64])
    return out


def _inner_pieces(m: int, n: int, k: int) -> int:
    """The pieces of a product cut along its inner dimension: a small result of a long sum (a
    weight's gradient over a large batch) is too small to cut into blocks of rows or columns
    (See Note [Products on threads]); 1 for any other product."""
    if m * n * k < PARALLEL_PRODUCT or k < INNER_RATIO * max(m, n):
        return 1
    return min(PRODUCT_BLOCKS, k // INNER_PIECE)


def _by_inner_pieces(em, pieces: int, k: int, out: Arr, gemm_at):
    """out = a @ b as `pieces` products over consecutive ranges of the inner dimension (the last
    shorter), each into a buffer of its own, on the threads; then their sum, added in order.
    gemm_at: as _gemm_lower's."""
    m, n = out.type.shape
    per = -(-k // pieces)
    parts = em.alloc(out.type.with_shape((pieces, m, n)))
    base, i64, zero = em.base_ptr(parts), em.i64, em.i64(0)

    def piece(j):
        k0, depth = em.block_of(j, per, k)
        c_at = em.b.gep(base, [em.b.mul(j, i64(m * n))], source_etype=mem_type(out.type.dtype))
        gemm_at(i64(m), i64(n), depth, zero, zero, k0, c_at)

    em.parallel_loop(pieces, piece, "mmk")
    views = [Arr(parts.ptr, i64(j * m * n), (n, 1), out.type) for j in range(pieces)]
    em.fill(out, views, em.sum_in_order, "mmsum")


PARALLEL_PRODUCT = 1 << 21  # multiply-adds from which a product is split among threads
PRODUCT_BLOCK = 32  # the fewest rows (columns) of one piece of it
PRODUCT_BLOCKS = 8  # the pieces it is cut into, at most
INNER_RATIO = 16  # a product is cut along its inner dimension when that is this many times its longest side
INNER_PIECE = 4096  # the fewest terms of each of those pieces

# Note [Products on threads]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~
# A large product is cut into at most PRODUCT_BLOCKS blocks of the rows of the result (of its
# columns, when it has fewer rows), which a parallel range runs on the threads (See Note
# [Parallel loops] in lower/emit.py), each thread one run of consecutive blocks in one call of
# the kernel. Each call packs the operand it shares with the others again: with four runs per
# thread, as other loops take, it was packed four times (at two threads, 1024^3 f32 270-300
# -> 320-330 GFLOP/s, 1.75-1.85x one thread's speed; 512^3 f64 130-135 -> 155; 2048^3 f64
# 105-160 from one process to the next, its rows a power of two apart). The kernel's sums do
# not depend on where the result is cut, so the result is the same on any count of threads. A
# small result of a long sum (a weight's gradient over a large batch: the 3 x 3 convolution's
# [72, 65536] @ [65536, 32]) cut in blocks of rows packed all of the long B in each, 1.3-1.4x
# one call's time; such a product (an inner dimension INNER_RATIO times its longest side) is
# instead cut along the inner dimension (_inner_pieces): each piece a product over its range
# into a buffer of its own, the pieces then added in order, with no packing twice. Those
# pieces depend on the shapes alone too. (OpenBLAS, which ran these products once, runs on one
# thread, lower/jit.py: its own threads would compete with the runtime's and split some
# products along the inner dimension by the count of threads.)


def _gemm_lower(em, a: Arr, b: Arr, dest) -> Arr:
    """out = a @ b by the generated kernel of lower/gemm.py: a and b with their own strides (a
    transposed b is packed from its columns), out = dest() with contiguous rows; on the
    threads in blocks of rows or columns, or, for a long sum, in pieces of it (See Note
    [Products on threads])."""
    (m, k), n = a.type.shape, b.type.shape[1]
    out = dest()
    elem = _FLOATS[out.type.dtype][0]
    pa, pb, pc = (em.b.gep(x.ptr, [x.offset], source_etype=elem) for x in (a, b, out))
    i64 = em.i64
    em.m.kernels.add(gemm.symbol(elem))

    def gemm_at(rows, cols, depth, r0, c0, k0, c_at):
        """C[r0 : r0 + rows, c0 : c0 + cols] = A[r0..., k0 : k0 + depth] @ B[k0..., c0...],
        C's element (r0, c0) at c_at, its rows n apart (i64 values)."""
        b_ = em.b
        a_at = b_.gep(pa, [b_.add(b_.mul(r0, i64(a.strides[0])), b_.mul(k0, i64(a.strides[1])))], source_etype=elem)
        b_at = b_.gep(pb, [b_.add(b_.mul(k0, i64(b.strides[0])), b_.mul(c0, i64(b.strides[1])))], source_etype=elem)
        a_s, b_s = (i64(s) for s in a.strides), (i64(s) for s in b.strides)
        args = [a_at, *a_s, b_at, *b_s, c_at, i64(max(n, 1))]
        em.b.call(gemm.declare(em.m.module, elem), args + [rows, cols, depth])

    def block(rows, cols, r0, c0):
        c_at = em.b.gep(pc, [em.b.add(em.b.mul(r0, i64(max(n, 1))), c0)], source_etype=elem)
        gemm_at(rows, cols, i64(k), r0, c0, i64(0), c_at)

    pieces = _inner_pieces(m, n, k)
    if pieces > 1:
        _by_inner_pieces(em, pieces, k, out, gemm_at)
    else:
        _in_pieces(em, m, n, k, block)
    return out


def _madd(em, dt, acc, a, b):
    """acc + a * b; for floats reassociable and contractible (as BLAS sums in any order), so
    that LLVM vectorises dot products and uses fused multiply-adds."""
    if dt.is_float:
        return em.b.fadd(acc, em.b.fmul(a, b, flags=("contract",)), flags=("reassoc", "nsz", "contract"))
    return _add(em, dt, acc, _mul(em, dt, a, b))


def _matmul_lower(em, eqn, ins):
    """Vectors and matrices: one product (below). A batch: one product per batch index, each
    reading its operands' matrices in place (a broadcast batch axis rereads the same one) and
    writing its rows of the result. See Note [Batched products]."""
    a, b = ins
    out_t = eqn.outs[0].type
    ra, rb = a.type.rank, b.type.rank
    view = em.view_destinations.get(eqn.outs[0].id)
    if out_t.rank == 2 and _by_columns(view) and isinstance(a, Arr) and isinstance(b, Arr):
        # the result is wanted transposed (a derivative's transpose(transpose(x) @ g), an
        # output): out^T = b^T @ a^T, computed into the output (See Note [Transposed
        # destinations] in lower/emit.py)
        _product(em, _transposed(b), _transposed(a), lambda: _transposed(view))
        return [view]
    if max(ra, rb) <= 2:
        return [_product(em, a, b, None if out_t.rank == 0 else lambda: em.result(eqn.outs[0]))]
    # in memory before the loop, unless each matrix is stored by rows or by columns (a transpose
    # of the last two axes), which a product reads as it is: a copy made in the loop body would
    # be made per matrix
    a, b = (x if _matrices_in_place(x) else em.materialise(x) for x in (a, b))
    out = em.result(eqn.outs[0])
    mats = (min(ra, 2), min(rb, 2), (ra > 1) + (rb > 1))  # the axes of one product, per operand
    batch = out_t.shape[: out_t.rank - mats[2]]

    def per_matrix(idx):
        x, y, z = (_at(em, v, idx, len(batch), m) for v, m in zip((a, b, out), mats))
        _product(em, x, y, lambda: z)

    count, work = prod(batch), a.type.shape[-1] * prod(out_t.shape[len(batch) :])
    if count > 1 and work < PARALLEL_PRODUCT <= count * work:  # small products, many of them: on the threads
        sizes = [prod(batch[k + 1 :]) for k in range(len(batch))]
        em.parallel_loop(count, lambda j: per_matrix([_axis_index(em, j, n, s) for n, s in zip(batch, sizes)]), "mb")
    else:
        em.loop_nest(batch, per_matrix, "mb")
    return [out]


def _axis_index(em, flat, length: int, size: int):
    """The index along an axis of `length` of the flat position `flat` (an i64 value) in a
    row-major array whose axes after it hold `size` elements."""
    return em.b.urem(em.b.udiv(flat, em.i64(size)), em.i64(length))


def _matrices_in_place(x) -> bool:
    """Whether x's matrices (its last two axes) are arrays in memory stored by rows or by
    columns, which a product reads in place (OpenBLAS as they are, with a leading dimension)."""
    if not isinstance(x, Arr) or x.type.rank < 2:
        return False
    (rows, cols), (s0, s1) = x.type.shape[-2:], x.strides[-2:]
    return (s1 == 1 and s0 >= max(cols, 1)) or (s0 == 1 and s1 >= max(rows, 1))


def _at(em, x: Arr, idx, rank: int, mat: int) -> Arr:
    """The last `mat` axes of x at the batch index idx (of `rank` axes), x's own batch axes
    aligned to the right and broadcast (an axis of length 1 is read at 0)."""
    own = x.type.rank - mat
    off = x.offset
    for k in range(own):
        if x.type.shape[k] != 1:
            off = em.b.add(off, em.b.mul(idx[rank - own + k], em.i64(x.strides[k])))
    return Arr(x.ptr, off, x.strides[own:], x.type.with_shape(x.type.shape[own:]))


def _line(x: Arr, axis: int) -> Arr:
    """The matrix x of one row (axis 1) or one column (axis 0) as the vector along axis."""
    return Arr(x.ptr, x.offset, (x.strides[axis],), x.type.with_shape((x.type.shape[axis],)))


def _product(em, a: Arr, b: Arr, dest):
    """a @ b for a and b of rank 1 or 2, into dest() (called once, when the operands are
    ready), or for two vectors (dest None) the scalar. Big float products call the kernel of
    lower/gemm.py or OpenBLAS; small and integer ones are loops, in the order i, k, j that
    keeps the innermost loop contiguous in b and out (vectorisable)."""
    ta, tb = a.type, b.type
    if dest is not None and ta.rank == tb.rank == 2 and 1 in (ta.shape[0], tb.shape[1]):
        # a matrix of one row (a) or one column (b) is a vector: the product is a
        # matrix-vector one, whose loops run along the contiguous axis (and the tiles of the
        # generated kernel, one row each, would each walk down all of b: 3.3x slower at 512)
        one_row = ta.shape[0] == 1
        if isinstance(a if one_row else b, Arr):
            made = []

            def line_dest():
                made.append(dest())
                return _line(made[0], 1 if one_row else 0)

            if one_row:
                _product(em, _line(a, 1), b, line_dest)
            else:
                _product(em, a, _line(b, 0), line_dest)
            return made[0]
    dt = ta.dtype
    work = ta.size * (tb.shape[1] if tb.rank == 2 else 1)  # multiply-adds; 0 when an axis is empty
    if dest is not None and dt in _FLOATS and work >= BLAS_MIN_WORK and isinstance(a, Arr) and isinstance(b, Arr):
        if ta.rank == 2 and tb.rank == 2:
            return _gemm_lower(em, a, b, dest)
        if jit.blas_available():
            return _gemv_lower(em, a, b, dest)
    if ta.rank == tb.rank == 2 and _by_columns(a) and _by_columns(b):
        # no loop order is contiguous in both: out^T = b^T @ a^T is (both stored by rows),
        # and its transpose, the size of out, is copied into out
        t = em.alloc(ta.with_shape((tb.shape[1], ta.shape[0])))
        _product(em, _transposed(b), _transposed(a), lambda: t)
        out = dest()
        em.copy_into(out, _transposed(t))
        return out
    K = ta.shape[-1]
    rows = ta.shape[0] if ta.rank == 2 else None
    cols = tb.shape[1] if tb.rank == 2 else None

    def a_at(i, k):
        return em.load(a, [i, k] if rows is not None else [k])

    def b_at(k, j):
        return em.load(b, [k, j] if cols is not None else [k])

    def dot(i, j):
        """sum_k a[i, k] * b[k, j] in a register (reassociable, so vectorised along k)."""
        acc = em.alloca(reg_type(dt))
        em.b.store(em.const(dt, 0), acc)
        em.loop(K, lambda k: em.b.store(_madd(em, dt, em.b.load(acc), a_at(i, k), b_at(k, j)), acc), "mk")
        return em.b.load(acc)

    def add_product(idx, x, y_at):
        """out[idx] += x * y_at(), y read after out[idx]."""
        em.store(out, idx, _add(em, dt, em.load(out, idx), _mul(em, dt, x, y_at())))

    if rows is None and cols is None:  # a dot product
        return dot(None, None)
    out = dest()
    # The innermost loop runs along an axis that is contiguous in the operands it reads
    # (a transposed view is stored by columns): for a matrix stored by rows times a vector,
    # a dot product per row; for one stored by columns, the vector's elements times its
    # columns added up; for b stored by columns, a dot product per element of the result;
    # otherwise a's elements times b's rows added up along out's rows.
    if cols is None and not _by_columns(a):
        em.loop(rows, lambda i: em.store(out, [i], dot(i, None)), "mi")
        return out
    if cols is not None and _by_columns(b) and (rows is None or not _by_columns(a)):
        em.loop_nest(
            out.type.shape, lambda idx: em.store(out, idx, dot(idx[0] if rows is not None else None, idx[-1])), "mo"
        )
        return out
    zero = em.const(dt, 0)
    em.loop_nest(out.type.shape, lambda idx: em.store(out, idx, zero), "mz")
    if cols is None:  # out[:] += a[:, k] * x[k]

        def per_k(k):
            xk = b_at(k, None)
            em.loop(rows, lambda i: add_product([i], xk, lambda: a_at(i, k)), "mi")

        em.loop(K, per_k, "mk")
        return out

    def per_row(i):  # out[i, :] += a[i, k] * b[k, :]
        def per_k(k):
            aik = a_at(i, k)
            em.loop(cols, lambda j: add_product([x for x in (i, j) if x is not None], aik, lambda: b_at(k, j)), "mj")

        em.loop(K, per_k, "mk")

    if rows is None:
        per_row(None)
    else:
        em.loop(rows, per_row, "mi")
    return out


def _transposed(x: Arr) -> Arr:
    return Arr(x.ptr, x.offset, x.strides[::-1], x.type.with_shape(x.type.shape[::-1]))


def _by_columns(x) -> bool:
    """Whether the matrix x is an array in memory whose columns, not rows, are contiguous."""
    return isinstance(x, Arr) and x.type.rank == 2 and x.strides[0] == 1 and x.strides[1] != 1


# --- derivative rules ---------------------------------------------------------------------------


def _outer(b, u, v):
    return ops.mul(b, ops.reshape(b, u, u.type.shape + (1,)), ops.reshape(b, v, (1,) + v.type.shape))


def _matmul_vjp(ctx, p, ins, outs, cts):
    b = ctx.b
    x, y = ins
    g = cts[0]
    rx, ry = x.type.rank, y.type.rank
    if rx == 1 and ry == 1:
        gx, gy = ops.mul(b, g, y), ops.mul(b, g, x)
    elif rx == 2 and ry == 1:
        gx, gy = _outer(b, g, y), ops.matmul(b, g, x)
    elif rx == 1 and ry == 2:
        gx, gy = ops.matmul(b, y, g), _outer(b, x, g)
    elif rx == 2 and ry == 2:
        gx, gy = ops.matmul(b, g, ops.transpose(b, y, (1, 0))), ops.matmul(b, ops.transpose(b, x, (1, 0)), g)
    else:
        gx, gy = _batched_vjp(b, x, y, g)
    fl = [t.type.dtype.is_float for t in ins]
    return [gx if fl[0] else None, gy if fl[1] else None]


def _swap(b, m):
    """m with its last two axes swapped (a batch of transposes)."""
    r = m.type.rank
    return ops.transpose(b, m, tuple(range(r - 2)) + (r - 1, r - 2))


def _batched_vjp(b, x, y, g):
    """A batch of products: vectors become matrices of one row (x) or column (y), then
    gx = g @ y^T and gy = x^T @ g per matrix, summed over the batch axes the operand was
    broadcast along."""
    x2 = ops.reshape(b, x, (1,) + x.type.shape) if x.type.rank == 1 else x
    y2 = ops.reshape(b, y, y.type.shape + (1,)) if y.type.rank == 1 else y
    batch = g.type.shape[: g.type.rank - (x.type.rank > 1) - (y.type.rank > 1)]
    g2 = ops.reshape(b, g, batch + (x2.type.shape[-2], y2.type.shape[-1]))
    gx = ops.unbroadcast(b, ops.matmul(b, g2, _swap(b, y2)), x2.type.shape)
    gy = ops.unbroadcast(b, ops.matmul(b, _swap(b, x2), g2), y2.type.shape)
    return ops.reshape(b, gx, x.type.shape), ops.reshape(b, gy, y.type.shape)


def _matmul_jvp(ctx, p, ins, outs, ts):
    b = ctx.b
    x, y = ins
    tx, ty = ts
    terms = []
    if tx is not None:
        terms.append(ops.matmul(b, tx, y))
    if ty is not None:
        terms.append(ops.matmul(b, x, ty))
    return [ops.add_all(b, terms)]


matmul_p = primitive(
    "matmul",
    shape=lambda ts: _matmul_shape(ts),
    lower=_matmul_lower,
    vjp=_matmul_vjp,
    jvp=_matmul_jvp,
    fold=lambda a, b: [np.matmul(a, b)],
    reads_all=True,
    hoistable=True,
    keeps_zeros=True,
)


# Note [Batched products]
# ~~~~~~~~~~~~~~~~~~~~~~~
# `a @ b` with an operand of rank 3 or more is a loop over the result's batch axes around the
# product of one pair of matrices, the same code a single product runs (the generated kernel,
# OpenBLAS, or the loops), so a batch of big matrices runs at the kernel's speed and a batch
# of small ones at the loops'. The matrix of an operand at a batch index is a view: its offset
# moved along its own batch axes, aligned to the right of the result's, an axis of length 1
# (broadcast) not moved at all. An operand whose matrices are stored by rows or by columns (a
# transpose of the last two axes: attention's keys, the columns of a convolution written as
# W @ columns per image, in its weight's gradient) is read in place, each matrix passed to
# OpenBLAS with its transpose flag or taken by the kernel as a product's transposed operand;
# one of other strides is made contiguous once before the loop, since a copy made in the
# loop's body would be made for every matrix. (That convolution at 32 x 3 x 32 x 32, f64: its
# value_and_grad 5.5 -> 3.6 ms, without the 7 MB copy of its columns up front.) The
# derivative makes vectors into matrices of one row or column, and then is two batched
# products with the other operand's last two axes swapped, summed over the batch axes along
# which the operand was broadcast (ops.unbroadcast). Products too small to be cut into blocks
# (PARALLEL_PRODUCT multiply-adds) but many (attention's scores and values, a [8, 4, 128, 32]
# batch) run a matrix per iteration of a parallel loop over the batch, each computed as on one
# thread: the same bits on any count of threads.


# Note [Orientations]
# ~~~~~~~~~~~~~~~~~~~
# A vector times a matrix can be written four ways (v @ M, transpose(M) @ v, M @ v,
# v @ transpose(M)), and a batch of one as a matrix of one row or column; a transpose is a
# view stored by columns. All run at the speed of the best one:
# - a matrix of one row or column is the vector it holds (the kernel's one-row tiles would
#   each walk down all of b's rows, 3.3x slower than gemv at 512);
# - the loops of small products pick their order from the layouts: a dot product per element
#   along k when a's rows and b's columns are contiguous, else a's elements times b's rows
#   added along out's rows (or a's columns times x's elements for a matrix-vector product);
#   with both operands stored by columns, out^T = b^T @ a^T, both by rows, then copied;
# - a kernel product with b stored by columns (g @ W^T in the derivative of x @ W) packs b
#   from its columns (Note [Packing] in lower/gemm.py). Computing (W @ g^T)^T instead, which
#   copied g and the result rather than W when a had few rows, was 1.16 against 1.47 times the
#   fastest peer at 128x784x512 f64 on an Intel Xeon once b was packed so.
# Every term of the sum is computed (no term is skipped for a zero factor), so 0 * inf gives
# NaN in every orientation, as NumPy's sum of products does.


# Note [Kernel or BLAS]
# ~~~~~~~~~~~~~~~~~~~~~
# The generated kernel was first written without packing: for each panel of B's columns it
# walked all of A, tile by tile of rows, and read B's panel from the L2 cache. While A stayed
# in L2 it ran at the core's peak, a little faster than OpenBLAS (at 256^3 on a Zen 4 core,
# 53-56 GFLOP/s in f64 and 110-113 in f32 against OpenBLAS's 47-50 and 98-100); beyond, every
# panel read A again from memory, and larger products went to OpenBLAS. Packed in blocks
# sized from the caches (See Note [Packing] in lower/gemm.py), the kernel's speed no longer
# depends on the operands' sizes. The last bound, both operands beyond L2 or an inner
# dimension beyond a term per half KiB of L2, fell when the kernel kept a transposed A packed
# across the blocks of B's columns: on an Intel Xeon (2 MiB of L2) at one thread, the kernel
# took 0.71-0.86x OpenBLAS's time at 1024^3 and 2048^3 in all three layouts (f32 1024^3 136
# -> 176-185 GFLOP/s, PyTorch's MKL 190-198), [512, 8192] @ [8192, 512] 0.88-0.9x, the long
# sum [72, 65536]^T @ [65536, 32] 0.72x in f64 and 0.79x in f32 (each inner piece a call of
# the kernel); at two threads 0.8-1.05x, the long sums 0.6-0.85x. So every float matrix-matrix product
# of BLAS_MIN_WORK multiply-adds or more is the kernel's, whose bits do not depend on the
# count of threads, and OpenBLAS computes only matrix-vector products (gemv), which need no
# packing. Its gemv takes a transposed operand as a flag and a slice with its leading
# dimension, and copies nothing; an operand of neither layout (a column step, b[:, ::2]) is
# copied first. The kernel takes any strides.

"""`einsum(spec, a)` and `einsum(spec, a, b)`: Einstein sums, traced into the primitives that
compute them fast: diagonals as strided views, sums over axes read once, one (batched) matrix
product for the contraction of two operands, and transposes, which are views. No primitive of
its own, so its derivatives are those of the pieces. See Note [Einsum as a product]."""

from __future__ import annotations

import string

import numpy as np

from ..errors import ShapeError, TypeError_
from ..ir.core import Var
from ..prims import elementwise as ew
from ..prims import linalg
from ..prims import reduce as red
from ..prims import shape as sh
from ..typesys import DType, promote
from .args import allowed_kwargs, tensor_arg
from .values import describe

LETTERS = set(string.ascii_letters)
ELLIPSIS = "..."


def einsum(tr, args, kwargs):
    allowed_kwargs("einsum", kwargs, ())
    if not args or not isinstance(args[0], str):
        got = describe(args[0]) if args else "nothing"
        raise TypeError_(f'`einsum` needs its spec as a string literal first, like "ij,jk->ik", got {got}')
    span = tr.arg_span(0)
    spec, xs = args[0].replace(" ", ""), [tensor_arg(x, "einsum", "operand") for x in args[1:]]
    ins, out = _parse(spec, len(xs), span)
    for k, (term, x) in enumerate(zip(ins, xs)):
        named = len(term.replace(ELLIPSIS, ""))
        if named > x.type.rank or (ELLIPSIS not in term and named != x.type.rank):
            more = " and `...`" * (ELLIPSIS in term)
            raise ShapeError(f'`einsum`: "{term}" names {named} axes{more}, but operand {k + 1} is {x.type}', span)
    ins, out, batch = _expand_ellipses(ins, out, xs)
    if batch and not set(batch) <= set(out):  # as NumPy: axes under `...` are never summed
        raise ShapeError(f'`einsum`: the output of "{spec}" needs a `...` for the axes under `...`', span)
    sizes = {}
    for term, x in zip(ins, xs):
        for c, n in zip(term, x.type.shape):
            m = sizes.setdefault(c, n)
            if m != n and not (c in batch and 1 in (m, n)):
                name = "an axis under `...`" if c in batch else f"index `{c}`"
                raise ShapeError(f"`einsum`: {name} has length {m} and {n}", span)
            sizes[c] = max(m, n)
    # the axes under `...` broadcast: an operand's axis of length 1 is read as the others' length
    xs = [_broadcast(tr, x, tuple(sizes[c] for c in term)) for term, x in zip(ins, _common_dtype(tr, xs))]
    # each operand: its diagonals taken and the indices only it has and the output lacks summed
    operands = []
    for k, (term, x) in enumerate(zip(ins, xs)):
        others = set(out).union(*(t for j, t in enumerate(ins) if j != k))
        operands.append(_own_sums(tr, *_diagonals(tr, term, x), others))
    term, x = operands[0] if len(operands) == 1 else _contract(tr, operands, out)
    return _transpose(tr, x, [term.index(c) for c in out])


def _parse(spec: str, count: int, span) -> tuple[list[str], str]:
    """The input terms and the output term; implicit output (no `->`): the axes under `...`
    then the indices used once, in alphabetical order, as NumPy."""
    lhs, arrow, rhs = spec.partition("->")
    ins = lhs.split(",")
    if not 1 <= count <= 2:
        raise TypeError_(f"`einsum` takes one or two operands, got {count}", span)
    if len(ins) != count:
        given = f"{count} {'is' if count == 1 else 'are'}"
        raise TypeError_(f'`einsum`: "{spec}" names {len(ins)} operands, but {given} given', span)
    used = "".join(t.replace(ELLIPSIS, "") for t in ins)
    if not arrow:
        rhs = ELLIPSIS * any(ELLIPSIS in t for t in ins) + "".join(sorted(c for c in set(used) if used.count(c) == 1))
    for term in ins + [rhs]:
        if term.count(ELLIPSIS) > 1:
            raise TypeError_(f'`einsum`: "{term}" in "{spec}" has more than one `...`', span)
    if ELLIPSIS in rhs and not any(ELLIPSIS in t for t in ins):
        raise TypeError_(f'`einsum`: the output of "{spec}" has `...` but no operand has', span)
    for c in used + rhs.replace(ELLIPSIS, ""):
        if c not in LETTERS:
            raise TypeError_(f'`einsum`: "{c}" in "{spec}" is not an index letter (a-z, A-Z) or `...`', span)
    rhs_letters = rhs.replace(ELLIPSIS, "")
    for c in rhs_letters:
        if rhs_letters.count(c) > 1:
            raise TypeError_(f'`einsum`: index `{c}` appears twice in the output of "{spec}"', span)
        if c not in used:
            raise TypeError_(f'`einsum`: output index `{c}` of "{spec}" is in no operand', span)
    return ins, rhs


def _expand_ellipses(ins: list[str], out: str, xs: list[Var]) -> tuple[list[str], str, str]:
    """The terms with each `...` replaced by letters of their own (Greek: no spec has them)
    for the axes it stands for, aligned to the right across operands as broadcasting does;
    and those letters."""
    counts = [x.type.rank - len(t.replace(ELLIPSIS, "")) for t, x in zip(ins, xs) if ELLIPSIS in t]
    batch = "".join(chr(0x3B1 + k) for k in range(max(counts, default=0)))
    ins = [t.replace(ELLIPSIS, batch[len(batch) - (x.type.rank - len(t) + 3) :]) for t, x in zip(ins, xs)]
    return ins, out.replace(ELLIPSIS, batch), batch


def _broadcast(tr, x: Var, shape) -> Var:
    return x if x.type.shape == shape else tr.emit(sh.broadcast_p, [x], shape=shape)


def _common_dtype(tr, xs: list[Var]) -> list[Var]:
    dt = xs[0].type.dtype
    for x in xs[1:]:
        dt = promote(dt, x.type.dtype)
    if dt is DType.BOOL:
        dt = DType.I64
    return [tr.convert(x, dt) for x in xs]


def _diagonals(tr, term: str, x: Var) -> tuple[str, Var]:
    """x with every index repeated in its term read along the diagonal: the repeated axes
    moved to the front, merged, and read with a stride of one more than the axis length."""
    while True:
        c = next((c for c in term if term.count(c) > 1), None)
        if c is None:
            return term, x
        at = [k for k, d in enumerate(term) if d == c]
        rest = [k for k in range(len(term)) if term[k] != c]
        n = x.type.shape[at[0]]
        x = _transpose(tr, x, at + rest)
        x = _reshape(tr, x, (n ** len(at),) + tuple(x.type.shape[len(at) :]))
        step = sum(n**j for j in range(len(at)))  # from (i, i, ..., i) to (i + 1, ...)
        x = tr.emit(sh.strided_slice_p, [x], starts=(0,), steps=(step,), counts=(n,))
        term = c + "".join(term[k] for k in rest)


def _own_sums(tr, term: str, x: Var, others: set[str]) -> tuple[str, Var]:
    """Sum the axes whose index appears nowhere else (they are done before any product)."""
    axes = tuple(k for k, c in enumerate(term) if c not in others)
    if not axes:
        return term, x
    return "".join(c for c in term if c in others), tr.emit(red.reduce_sum_p, [x], axes=axes)


def _contract(tr, operands, out: str) -> tuple[str, Var]:
    """Two operands as one matrix product: a's indices grouped as (batch, a's own, summed) and
    b's as (batch, summed, b's own), each group merged into one axis (none for an empty group
    where the product allows a vector), then one `@`."""
    (ta, a), (tb, b) = operands
    batch = [c for c in ta if c in tb and c in out]
    summed = [c for c in ta if c in tb and c not in out]
    own_a = [c for c in ta if c not in tb]
    own_b = [c for c in tb if c not in ta]
    size = dict(zip(ta, a.type.shape)) | dict(zip(tb, b.type.shape))
    bshape = tuple(size[c] for c in batch)
    term = "".join(batch + own_a + own_b)
    if not summed:  # nothing to sum: every a[batch, own_a] times every b[batch, own_b], broadcast
        a = _transpose(tr, a, [ta.index(c) for c in batch + own_a])
        b = _transpose(tr, b, [tb.index(c) for c in batch + own_b])
        a = _reshape(tr, a, a.type.shape + (1,) * len(own_b))
        b = _reshape(tr, b, bshape + (1,) * len(own_a) + b.type.shape[len(batch) :])
        return term, tr.emit(ew.mul_p, [a, b])

    def group(x, term, first, second, keep_first, keep_second):
        x = _transpose(tr, x, [term.index(c) for c in batch + first + second])
        dims = bshape
        if keep_first:
            dims += (int(np.prod([size[c] for c in first])),)
        if keep_second:
            dims += (int(np.prod([size[c] for c in second])),)
        return _reshape(tr, x, dims)

    # a vector operand needs no batch axes; with them, every operand stays a (batch of) matrices
    a_mat, b_mat = bool(batch or own_a), bool(batch or own_b)
    a = group(a, ta, own_a, summed, a_mat, True)
    b = group(b, tb, summed, own_b, True, b_mat)
    y = tr.emit(linalg.matmul_p, [a, b])
    return term, _reshape(tr, y, bshape + tuple(size[c] for c in own_a + own_b))


def _transpose(tr, x: Var, perm) -> Var:
    perm = tuple(perm)
    return x if perm == tuple(range(len(perm))) else tr.emit(sh.transpose_p, [x], perm=perm)


def _reshape(tr, x: Var, shape) -> Var:
    shape = tuple(shape)
    return x if x.type.shape == shape else tr.emit(sh.reshape_p, [x], shape=shape)


# Note [Einsum as a product]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~
# After its diagonals and its own sums, an operand's indices are of four kinds: in both
# operands and the output (a batch), in both and not the output (summed by the product), in
# one operand and the output (that operand's own). So a two-operand einsum is
#     out[batch, own_a, own_b] = sum_summed a[batch, own_a, summed] * b[batch, summed, own_b]
# which is `@` once each operand's groups are merged into single axes: a transpose (a view)
# then a reshape (a copy only when the transpose made the groups non-contiguous). The common
# contractions (ij,jk->ik; ij,kj->ik; bij,bjk->bik; bhqd,bhkd->bhqk; i,i->) need no copy
# beyond what the product itself makes of a transposed right operand.

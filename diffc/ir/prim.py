"""What an equation's primitive is: the IR's schema of a primitive, one record holding all that
the compiler knows about it (shape rule, derivative rules, lowering, and the facts the passes
read). Primitives are declared in prims/ (prims/core.py keeps the registry); the IR itself
needs one, `const`, what a known value (Var.known) is re-created with."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from ..typesys import TensorType, dtype_of_numpy


class Kind(enum.Enum):
    """What sort of operation a primitive is; several of its facts default from it."""

    ELEMENTWISE = "elementwise"  # out[i] depends on each input's element i (broadcast)
    REDUCTION = "reduction"  # sums, products, max, min over axes: reads every element once
    SHAPE = "shape"  # moves elements around: views, gathers, scatters, padding
    CONSTANT = "constant"  # makes a value from its params alone
    LOOP = "loop"  # runs a body several times (its operands: see Loop)
    CALL = "call"  # calls a function of the program (may print, recurse)
    OTHER = "other"


@dataclass(frozen=True)
class Loop:
    """Where a loop primitive's operands are, read from its params.

    The structured ops' layouts (the specialiser builds bodies to match; fold, unfold, iterate
    and comprehensions are built on map and scan):
      map   inputs [*xs, *consts]          body (i, *x_rows, *consts) -> ys    outs: stacked ys
      scan  inputs [*init, *xs, *consts]   body (i, *carry, *x_rows, *consts) -> (*carry, *ys)
                                           outs: (*final carry, *stacked ys); `reverse` walks back
      while inputs [*init, *consts]        cond (*state, *consts) -> bool; body -> state
      cond  inputs [pred, *operands]       branches (then, else), each (*operands) -> outs
      call  inputs args                    params func (a Program's Func name), out_types
    """

    # params -> iterations; None: known at run time only (counted as one run of the body)
    trips: Callable[[dict], int] | None = None
    # params -> (input of the first carry, body param of the first carry, number of carries),
    # for the loops whose lowering can update an array carry in place; None: no such carries
    carries: Callable[[dict], tuple[int, int, int]] | None = None
    # params -> body param of the first captured constant; None: invariants are not hoisted
    consts: Callable[[dict], int] | None = None
    # the body is (i, *inputs) with the first carries fed back (map, scan); False: opaque
    indexed: bool = False
    # params -> the first output that stacks the body's output at its place, as every one after
    # it does (map: 0, scan: its carries' count); None: the outputs are not the body's stacked
    stacked: Callable[[dict], int] | None = None


@dataclass(eq=False)
class Prim:
    """A primitive operation of the IR.

    shape(in_types, **params) -> list of out types; raises ShapeError on bad inputs.
    lower(em, eqn, ins) -> list of lowered outs (see lower/emit.py).
    The derivative rules take a context `ctx` first (ad/rules.py): its builder ctx.b, the
    transforms, the program and the reverse-mode Mode.
    jvp(ctx, params, ins, outs, tangents) -> tangents of the outs (None: zero).
    vjp(ctx, params, ins, outs, cts) -> cotangents of the ins (None: zero). Structured ops also
    have vjp_fwd(ctx, eqn, ins, active) -> (outs, aux), an augmented forward whose aux replaces
    `ins` in their vjp, and jvp_full(ctx, eqn, ins, tangents) -> (outs, tangents), emitted
    instead of the op itself.
    fold(*known_inputs, **params) -> list of arrays: compile-time evaluation for known
    (integer, boolean, shape) values only.
    """

    name: str
    shape: Callable[..., list]
    kind: Kind = Kind.OTHER  # what sort of op it is (some defaults below follow from it)
    lower: Callable | None = None
    jvp: Callable | None = None
    vjp: Callable | None = None
    vjp_fwd: Callable | None = None
    jvp_full: Callable | None = None
    # elementwise: partials(b, *ins, out) -> per input, its partial derivative (a value
    # broadcastable to the output), or None; jvp and vjp are built from it. Default None
    partials: Callable | None = None
    # elementwise and linear: d(out) = sum of linear[k] * d(in_k) (+1 or -1). Default None
    linear: tuple[int, ...] | None = None
    threads_cotangents: bool = False  # vjp(..., current) -> (cts, indices of totals): see ad/vjp.py
    tapes: bool = False  # its vjp_fwd makes a run-time tape that only its vjp frees: vjp always runs
    # what the run-time tape it reads or writes belongs to ("a `while` loop"), for the error
    # refusing a derivative of its derivative; default None: not a tape op
    taped: str | None = None
    nondiff: bool = False  # its outputs carry no derivative (comparisons, integer ops, random bits)
    fold: Callable | None = None
    effect: bool = False  # must be kept and ordered even when its outputs are unused (print)
    # it may stop the program with a run-time error (a bounds check) unless its params say
    # `safe=True`: see may_fail. Default False
    fallible: bool = False
    fusable: bool = False  # lowered by em.elementwise: may stay Lazy (lower/emit.py)
    reads_lazy: bool = False  # its lowering reads inputs only through em.read/broadcast_view
    # its lowering takes a uniform Lazy input (a broadcast scalar) as it is, not stored first
    reads_uniform: bool = False
    # map: read by a reduction, its lowering yields a Lazy (the body evaluated per element read)
    lazy_when_reduced: bool = False
    # read once, by an op that reads Lazy values, its lowering may yield a Lazy (em.fuse_next)
    lazy_result: bool = False
    # worth recomputing per element where a body is evaluated lazily; default: fusable
    cheap: bool | None = None
    cost: int = 1  # scalar operations per element, when fusion weighs recomputing it
    # its work is its largest input's size, not its outputs' (a loop's Ctrl-C check);
    # default: a reduction
    reads_all: bool | None = None
    # a scalar result the backward pass may recompute instead of taping (ad/vjp.py,
    # rematerialisable): cheap and exact. Default False
    remat: bool = False
    # licm may compute it once before a loop when its inputs are invariant; default: an
    # elementwise, reduction, shape or constant op (never a call; effects and ops that may fail
    # are checked apart)
    hoistable: bool | None = None
    # an output is zero only where an input is (or by rounding), so a "maybe a structural zero"
    # mark passes through it without it making new ones (optimise/guards.py); a predicate of the
    # equation where that depends on it. Default False
    keeps_zeros: bool | Callable = False
    # how a loop carry that only adds this op's result is updated in place (lower/loops.py,
    # accumulators): "add" (add itself), "gather" (gather_add), "index" (index_scatter); default None
    accumulate_as: str | None = None
    # an all-zeros first input gives an all-zeros output (broadcast, reshape: ir/walk.is_zeros)
    keeps_all_zeros: bool = False
    # on integer scalars: (lo, hi) intervals of the inputs (or None) -> the output's, so an index
    # known to be in range needs no bounds check (ir/build.py). Default None
    interval: Callable | None = None
    loop: Loop | None = None  # a loop's operand layout; default None: not a loop
    # its result is a view of its operand's buffer, made with no copy of a contiguous one
    # (broadcast, reshape, transpose): a part of a long body that reads it makes it itself
    # (lower/llvm.py, body_parts). Default False
    view: bool = False
    # a view op that copies an operand that is not contiguous (reshape: a transpose's result);
    # default False
    copies_strided: bool = False
    # a view op: (the Arr its result is wanted in, params) -> the view of that buffer its
    # operand is, which the operand's op may compute into (lower/emit.py, See Note [Transposed
    # destinations]); default None
    operand_destination: Callable | None = None
    # (em, eqns, ins of each) -> the outs of each, or None where it cannot: lowers equations of
    # it that read the same value with the same params (its max and its sum over the same
    # axes) in one walk of that value (lower/emit.py, siblings); default None
    lower_together: Callable | None = None

    def __post_init__(self):
        if self.cheap is None:
            self.cheap = self.fusable
        if self.reads_all is None:
            self.reads_all = self.kind is Kind.REDUCTION
        if self.hoistable is None:
            self.hoistable = self.kind in (Kind.ELEMENTWISE, Kind.REDUCTION, Kind.SHAPE, Kind.CONSTANT)
        if self.kind is Kind.ELEMENTWISE and not (self.nondiff or (self.vjp and self.jvp)):
            # (prims/elementwise.py builds both from `partials` or `linear`)
            raise ValueError(f"elementwise primitive {self.name} needs partials or a derivative rule, or nondiff=True")
        if (self.kind is Kind.LOOP) != (self.loop is not None):
            raise ValueError(f"primitive {self.name}: a loop, and only a loop, has a Loop layout")

    def __repr__(self) -> str:
        return self.name


def may_fail(eqn) -> bool:
    """Whether eqn itself may stop the program with a run-time error: such an equation is kept
    even when its outputs are unused, and never moved to where it might run when the program
    would not run it (an out-of-range index is an error whether or not its value is read)."""
    return eqn.prim.fallible and not eqn.params.get("safe", False)


def _const_shape(in_types, value) -> list[TensorType]:
    return [TensorType(dtype_of_numpy(value.dtype), value.shape)]


# a literal or known value, params value=<ndarray>
const_p = Prim(
    "const",
    shape=_const_shape,
    kind=Kind.CONSTANT,
    lower=lambda em, eqn, ins: [em.constant(eqn.params["value"], eqn.outs[0].type)],
    fold=lambda value: [value],
    nondiff=True,
    cheap=True,
    remat=True,
    keeps_zeros=True,
)

"""Reverse mode as a transform of typed IR into typed IR.

vjp_split(ctx, body, needs) returns two ordinary bodies:
  fwd:  (params)                      -> (outs, intermediate residuals)
  bwd:  (cotangents of the float outs, residuals) -> (cotangents of the params that need them)
The backward body is built in a Builder nested in the forward one, so every forward value it
reads is captured: the residuals are exactly what the backward pass uses, nothing else.
Residuals that are params of the body are not returned by fwd (the caller has them already):
`kinds` says, per residual, ("param", k) or ("out", j).

Every rule is given a context (ad/rules.py, Ctx) on the builder it emits into.
Structured ops (map, scan, cond, while, call) have a `vjp_fwd` rule that emits an augmented
forward op (one that also returns what its body's backward needs) and a `vjp` rule that emits
the backward op; simple primitives are re-emitted as they are, and their `vjp` rule reads
their inputs and outputs directly."""

from __future__ import annotations

from ..errors import TypeError_
from ..ir.build import Builder
from ..ir.core import Body, is_float
from ..ir.prim import Kind, may_fail
from ..ir.walk import clone_body
from ..prims import ops


def unsupported(prim) -> str:
    """Why an equation cannot be differentiated."""
    if prim.taped is not None:
        return f"a second-order derivative through {prim.taped} (differentiating its derivative) is not supported yet"
    return f"cannot differentiate through `{prim.name}`"


def located(eqn):
    """The equation's span, or None (the caller's call site is used) for generated code."""
    return eqn.span if eqn.span.file is not None else None


def re_emit(b: Builder, eqn, ins):
    """Emit a copy of eqn (its sub-bodies copied too) on new inputs."""
    params = {
        k: clone_body(v)
        if isinstance(v, Body)
        else (tuple(clone_body(x) for x in v) if isinstance(v, tuple) and v and isinstance(v[0], Body) else v)
        for k, v in eqn.params.items()
    }
    return b.emit(eqn.prim, ins, eqn.span, **params)


class Cotangents:
    """Cotangents by value id; absent means a symbolic zero. Adds up repeated uses."""

    def __init__(self, b: Builder):
        self.b, self.cts = b, {}

    def get(self, v):
        return self.cts.get(v.id)

    def add(self, v, c):
        if c is None:
            return
        if c.type != v.type:
            raise AssertionError(f"cotangent {c.type} for a value of type {v.type}")
        old = self.cts.get(v.id)
        self.cts[v.id] = c if old is None else ops.add(self.b, old, c)

    def set(self, v, c):
        """Replace v's cotangent by c, a total that already includes the old one."""
        if c.type != v.type:
            raise AssertionError(f"cotangent {c.type} for a value of type {v.type}")
        self.cts[v.id] = c


def vjp_split(ctx, body: Body, needs: list[bool], accumulate=()):
    """See the module docstring. needs[k]: whether param k wants a cotangent. For the params
    listed in `accumulate`, bwd takes their cotangent so far (after the seeds, in that order)
    and returns it with this body's contributions added: see Note [Threaded accumulators].
    ctx (ad/rules.py): the program and mode the rules build in."""
    fb = Builder()
    fctx = ctx.on(fb)
    params = [fb.param(p.type, p.known, p.hint) for p in body.params]
    env = dict(zip(body.params, params))
    active = {p.id for p, need in zip(params, needs) if need and is_float(p)}
    records = []
    defined = {p.id for p in params}
    for eqn in body.eqns:
        ins = [env[x] for x in eqn.inputs]
        act = [x.id in active for x in ins]
        fb.span = eqn.span
        if any(act) and not eqn.prim.nondiff:
            if eqn.prim.vjp is None:
                raise TypeError_(unsupported(eqn.prim), located(eqn))
            if eqn.prim.vjp_fwd is not None:
                outs, aux = eqn.prim.vjp_fwd(fctx, eqn, ins, act)
                # an augmented forward may return an existing value (an identity body): give
                # each output its own identity, or its cotangent would be counted twice
                outs = [ops.copy(fb, o) if o.id in defined else o for o in outs]
            else:
                outs, aux = re_emit(fb, eqn, ins), ins
            active.update(o.id for o in outs if is_float(o))
            records.append((eqn, ins, aux, outs))
        else:
            outs = re_emit(fb, eqn, ins)
        env.update(zip(eqn.outs, outs))
        defined.update(o.id for o in outs)
    fwd_outs = [env[o] for o in body.outs]

    bb = Builder(fb)
    bb.remat = rematerialisable(fb)
    bctx = ctx.on(bb)
    cts = Cotangents(bb)
    seeds = [(o, bb.param(o.type)) for o in fwd_outs if is_float(o)]
    for k in accumulate:
        cts.set(params[k], bb.param(params[k].type))
    # after the accumulators: a body that returns an accumulated param adds its seed to it
    for o, seed in seeds:
        if o.id in active:
            cts.add(o, seed)
    for eqn, ins, aux, outs in reversed(records):
        co = [cts.get(o) if is_float(o) else None for o in outs]
        if all(c is None for c in co) and not eqn.prim.tapes:
            continue  # (a tape must still be read back, to be freed, even with zero cotangents)
        bb.span = eqn.span
        if eqn.prim.threads_cotangents:
            current = [cts.get(x) if x.id in active else None for x in ins]
            ci, totals = eqn.prim.vjp(bctx, eqn.params, aux, outs, co, current)
        else:
            ci, totals = eqn.prim.vjp(bctx, eqn.params, aux, outs, co), ()
        # totals first: a value that is also an ordinary input of the same equation (a loop's
        # initial state and one of its constants) gets that contribution added after
        for k in totals:
            if ci[k] is not None and ins[k].id in active:
                cts.set(ins[k], ci[k])
        for k, (x, c) in enumerate(zip(ins, ci)):
            if c is not None and x.id in active and k not in totals:
                cts.add(x, c)
    result = []
    for p, need in zip(params, needs):
        if need and is_float(p):
            c = cts.get(p)
            result.append(c if c is not None else ops.zeros(bb, p.type))
    result = [bb.use(r) for r in result]
    drop_dead(bb, result)
    bwd, residuals = bb.finish(result)
    position = {p.id: k for k, p in enumerate(params)}
    kinds, extra = [], []
    for r in residuals:
        if r.id in position:
            kinds.append(("param", position[r.id]))
        else:
            kinds.append(("out", len(extra)))
            extra.append(r)
    fwd, _ = fb.finish(fwd_outs + extra)
    return fwd, bwd, kinds


def drop_dead(b: Builder, outs) -> None:
    """Drop the equations of b that `outs` do not need and that cannot fail or have an effect,
    and the captures only they read. A rule emits the cotangents of all its inputs (pow's of
    its exponent), but those of inactive inputs must cost no residual: in a loop, a tape of a
    value per iteration that the backward never reads."""
    live = {o.id for o in outs}
    kept = []
    for e in reversed(b.eqns):
        if any(o.id in live for o in e.outs) or not pure(e):
            kept.append(e)
            live.update(x.id for x in e.inputs)
    b.eqns = kept[::-1]
    b.captures = {v: c for v, c in b.captures.items() if c[1].id in live}


def pure(e) -> bool:
    """Whether e can be dropped when its outputs are unused: no effect, no possible failure,
    no call (whose function may have either), in e or the bodies it owns."""
    if e.prim.effect or may_fail(e) or e.prim.kind is Kind.CALL:
        return False
    return all(pure(f) for body in e.bodies() for f in body.eqns)


REMAT_BUDGET = 6  # ops recomputed per residual, at most


def rematerialisable(fb: Builder) -> dict:
    """Residuals the backward pass recomputes instead of reading from the tape: numbers made
    by a few cheap ops (those whose Prim says `remat`: indexing, integer and float arithmetic
    without division, comparisons; and any arithmetic on constants) from the body's params,
    which the backward has anyway, and views of them (attention's k^T per head was taped:
    32 KiB copied per head and call, and transposed back). A comprehension's loads from its
    inputs and its index arithmetic then cost no tape at all (the tape of the conv_small
    gradient: 2.2 MB -> 0). Returns value id -> the equation to re-emit."""
    free = {p.id for p in fb.params}
    remat, cost = {}, {}
    for eqn in fb.eqns:
        if not all(x.id in free or x.id in remat for x in eqn.inputs):
            continue
        if eqn.prim.view and len(eqn.outs) == 1:  # (a reshape or transpose of a param: no copy)
            remat[eqn.outs[0].id], cost[eqn.outs[0].id] = eqn, sum(cost.get(x.id, 0) for x in eqn.inputs)
            continue
        if any(o.type.rank for o in eqn.outs):
            continue
        if not eqn.prim.remat and not (eqn.prim.fusable and all(x.known is not None for x in eqn.inputs)):
            continue  # (arithmetic on constants costs nothing: LLVM folds it)
        c = 1 + sum(cost.get(x.id, 0) for x in eqn.inputs)
        if c <= REMAT_BUDGET:
            for o in eqn.outs:
                remat[o.id], cost[o.id] = eqn, c
    return remat


def residual_values(kinds, params, extra_outs):
    """The residual values for bwd, given the params of fwd and its extra outputs."""
    return [params[k] if kind == "param" else extra_outs[k] for kind, k in kinds]


# Note [Threaded accumulators]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# The backward loop of a map or scan carries the cotangent of every loop-invariant input it
# reads (a tied weight). Instead of starting that carry at zero and adding the result to the
# cotangent accumulated so far, the loop starts from the cotangent so far and hands back the
# total (`threads_cotangents` rules, `accumulate` in vjp_split). Through nested loops (a
# comprehension over n, f, i, j reading one kernel) one buffer is threaded through every level,
# updated in place (lower/loops.py, accumulators), instead of a fresh zero accumulator per
# iteration of each outer level.
#
# Note [Structural zeros]
# ~~~~~~~~~~~~~~~~~~~~~~~~
# A cotangent that is known to be zero is absent (None), never a zero tensor: no rule runs for
# it. Where a zero can only be known at run time (the branch of `where` not taken), the
# elementwise rules multiply a cotangent (or tangent, in forward mode) t by each partial p that
# is not a finite constant with `guarded_mul`: t * p, but 0 where t is 0, whatever p (inf, NaN).
# Its derivative is a product's (exact at second order, which a `select` around the product
# would not be), each factor guarded by the one that can be a structural zero: the first-order
# t also guards the second-order product that reaches p. So bounded partials (tanh's) are
# guarded too: an infinite second-order cotangent meets tanh's zero partial, through the branch
# not taken, in grad(grad(where(x < 1, tanh(exp(x)), x))) at 800. (A guard on both factors
# instead costs 1.8x on conv_small's gradient: a compare per element of the inner loop.) The
# guards pass (optimise/guards.py) makes a product plain where t cannot be a structural zero (no
# `where`, no materialised zero upstream): a scalar chain pays no compare and select per product.
# So `where(x > 0, x * log(x), 0)` has a finite gradient at 0, `where(z > 20, z, log1p(exp(z)))`
# at 800. The branches of `if` are separate bodies: the one not taken runs no backward code.

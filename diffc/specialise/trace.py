"""Specialisation: trace a DFL function, for the types and shapes of its arguments, into
typed SSA IR.

The tracer is an abstract interpreter over the AST: tensors become IR values emitted into the
current Builder; tuples, records and functions are compile-time values, so closures and
higher-order calls are specialised away here (see Note [Inlining]). Recursive functions
become IR Funcs reached by `call` (see Note [Recursive return types])."""

from __future__ import annotations

import numpy as np

from ..errors import DiffcError, NameError_, ShapeError, TypeError_
from ..ir.build import MAX_RANK, Builder, close_together
from ..ir.core import Func, Program, Var
from ..ir.hoist import hoist
from ..prims import call, cond, map_
from ..prims import elementwise as ew
from ..prims import shape as sh
from ..pytree import LEAF, Record, TreeDef, flatten, unflatten
from ..source import NO_SPAN, Span
from ..syntax import nodes as n
from ..typesys import DType, TensorType, dtype_of_numpy, promote
from .builtins import BINOPS, BUILTINS, arith_unary, index, logical_not, matmul, short_circuit
from .values import Builtin, Closure, FnRef, ModuleRef, NeedStatic, Partial, Static, Weak, describe

MAX_RETRACE = 4
MAX_PENDING = 32  # nested specialisations of one recursive function, each for new argument types


class Bottom(Exception):
    """A call to a recursive function whose return type is not known yet (see Note)."""

    def __init__(self, spec):
        self.spec = spec


class Spec:
    def __init__(self, fndef, module, key, name):
        self.fndef, self.module, self.key, self.name = fndef, module, key, name
        self.ret = None  # (treedef, [TensorType]) once known
        self.done = False


def is_tensor(v) -> bool:
    return isinstance(v, Var)


class Tracer:
    def __init__(self, recursive_fns: set):
        self.recursive_fns = recursive_fns  # ids of FnDefs that are part of a call cycle
        self.program = Program()
        self.specs: dict = {}
        self.taints: list[set] = [set()]
        self.b: Builder = Builder()
        self.root: Builder = self.b
        self.let_cache: dict = {}
        self.lets_in_progress: set = set()
        self.span: Span | None = None
        self.arg_spans: list[Span] = []  # of the arguments of the built-in being called, when known
        # See Note [Static arguments]
        self.entry_leaves: dict[Var, int] = {}  # a parameter of the entry -> its leaf index
        self.leaf_names: list[str] = []  # how each leaf of the entry's arguments is named
        self.may_be_static: set[int] = set()  # int and bool scalar leaves given with their values
        self.static_leaves: set[int] = set()  # the leaves taken as compile-time values
        self.sources: dict[Var, Var] = {}  # a parameter of a nested trace -> the value it stands for

    # --- emitting ------------------------------------------------------------------------------

    def emit(self, prim, inputs, **params) -> Var:
        return self.b.emit1(prim, inputs, self.span, **params)

    def emit_n(self, prim, inputs, **params) -> list[Var]:
        return self.b.emit(prim, inputs, self.span, **params)

    def const(self, value, dtype: DType | None = None) -> Var:
        arr = np.asarray(value)
        dt = dtype or dtype_of_numpy(arr.dtype)
        return self.emit(sh.const_p, [], value=arr.astype(dt.np))

    def convert(self, x: Var, dtype: DType) -> Var:
        if x.type.dtype is dtype:
            return x
        return self.emit(ew.convert_p, [x], dtype=dtype)

    # --- entry points ----------------------------------------------------------------------------

    def trace_entry(self, fnval, arg_types_tree, name: str, transform=None, values_given: bool = False):
        """Trace `fnval` called with parameters of the given types into program func `name`.
        arg_types_tree is a tuple (one per argument) of trees with TensorType leaves, and
        Static leaves for the arguments taken as compile-time values; transform(tracer, fnval)
        may wrap the function first (grad of it, say). With values_given, the caller has the
        values of the arguments: a compile-time value needed from an int or bool scalar
        argument raises NeedStatic (See Note [Static arguments])."""
        leaf_types, tree = flatten(arg_types_tree)
        self.b = self.root = Builder()
        params = []
        for i, t in enumerate(leaf_types):
            if isinstance(t, Static):
                p = self.b.param(t.type, np.asarray(t.value, dtype=t.type.dtype.np))
                self.static_leaves.add(i)
            elif isinstance(t, Weak):
                p = self.b.param(t.type)
            else:
                p = self.b.param(t)
                if values_given and t.rank == 0 and t.dtype in (DType.I64, DType.BOOL):
                    self.may_be_static.add(i)
            self.entry_leaves[p] = i
            params.append(self.convert(p, DType.F32) if isinstance(t, Weak) else p)
        args = unflatten(tree, params)
        span = fnval.fndef.span if isinstance(fnval, FnRef) else None
        names = [p.name for p in fnval.fndef.params] if isinstance(fnval, FnRef) else []
        self.leaf_names = leaf_names(tree, names)
        if transform is not None:
            fnval = transform(self, fnval)
        result = self.call(fnval, list(args), {}, span)
        outs, out_tree = flatten(result)
        for o in outs:
            if not is_tensor(o):
                raise TypeError_(
                    f"`{getattr(fnval, 'name', name)}` must return arrays, numbers, tuples or records, "
                    f"but it returns {describe(result)}",
                    span,
                )
        body, captured = self.b.finish(outs)
        assert not captured
        self.program.funcs[name] = Func(name, body, span or NO_SPAN)
        self.program.entry = name
        return self.program, out_tree

    # --- expressions ---------------------------------------------------------------------------

    def eval(self, e: n.Expr, env: dict):
        saved = self.span
        self.span = e.span
        try:
            return getattr(self, "eval_" + type(e).__name__)(e, env)
        except DiffcError as err:
            if err.span is None:
                err.span = e.span
            raise
        finally:
            self.span = saved

    def eval_Num(self, e, env):
        return self.const(e.value, DType.F64 if e.is_float else DType.I64)

    def eval_Bool(self, e, env):
        return self.const(e.value, DType.BOOL)

    def eval_Str(self, e, env):
        return e.value

    def eval_Name(self, e, env):
        if e.id in env:
            return env[e.id]
        return self.lookup_global(e.id, env.get("__module__"), e.span)

    def lookup_global(self, name, module, span):
        member = module.member(name) if module else None
        if isinstance(member, n.FnDef):
            return FnRef(member, module)
        if isinstance(member, n.LetDef):
            return self.module_let(module, member)
        if module and name in module.imports:
            return ModuleRef(module.imports[name])
        if name in BUILTINS:
            return Builtin(name, BUILTINS[name])
        raise NameError_(f"unknown variable `{name}`", span)

    def module_let(self, module, let: n.LetDef):
        """A module-level constant, traced once into the root body of the current function."""
        key = (id(self.root), id(let))
        if key in self.let_cache:
            return self.let_cache[key]
        if key in self.lets_in_progress:
            raise NameError_(f"`{let.name}` is defined in terms of itself", let.span)
        self.lets_in_progress.add(key)
        saved = self.b
        self.b = self.root
        try:
            v = self.eval(let.value, {"__module__": module})
        finally:
            self.b = saved
            self.lets_in_progress.discard(key)
        self.let_cache[key] = v
        return v

    def eval_Block(self, e, env):
        env = dict(env)
        for s in e.stmts:
            if isinstance(s, n.Let):
                v = self.eval(s.value, env)
                self.bind(s.pattern, v, env)
            else:
                self.eval(s.expr, env)
        return self.eval(e.result, env)

    def bind(self, pat, v, env):
        if isinstance(pat, n.PName):
            env[pat.name] = v
            return
        if not isinstance(v, tuple) or len(v) != len(pat.items):
            want = len(pat.items)
            raise TypeError_(
                f"cannot destructure {describe(v)} into a tuple of {want} element{'s' * (want != 1)}", pat.span
            )
        for p, x in zip(pat.items, v):
            self.bind(p, x, env)

    def eval_TupleLit(self, e, env):
        return tuple(self.eval(x, env) for x in e.elems)

    def eval_RecordLit(self, e, env):
        fields = {}
        for name, x in e.fields:
            if name in fields:
                raise NameError_(f"field `{name}` appears twice in this record", x.span)
            fields[name] = self.eval(x, env)
        return Record(fields)

    def eval_ArrayLit(self, e, env):
        if not e.elems:
            raise ShapeError("an empty array literal has no element type; use zeros([0])")
        literal = _literal_array(e)
        if literal is not None:
            return self.const(literal)
        items = [self.tensor(self.eval(x, env), x.span) for x in e.elems]
        return self.stack(items, 0)

    def eval_Lambda(self, e, env):
        return Closure(e.params, e.body, dict(env), env.get("__module__"))  # captures by value

    def eval_Field(self, e, env):
        v = self.eval(e.value, env)
        if isinstance(v, ModuleRef):
            return self.lookup_global_member(v.module, e.name, e.span)
        if isinstance(v, Record):
            if e.name not in v.fields:
                have = ", ".join(v.fields)
                message = f"the record has no field `{e.name}` (it has {have})"
                raise NameError_(message, e.span, misspelt=(e.name, v.fields))
            return v.fields[e.name]
        raise TypeError_(f"`.{e.name}` needs a record or a module, got {describe(v)}", e.span)

    def lookup_global_member(self, module, name, span):
        member = module.member(name)
        if member is None:
            names = [f"{module.name}.{m}" for m in [*module.fns, *module.lets]]
            raise NameError_(f"module `{module.name}` has no `{name}`", span, misspelt=(f"{module.name}.{name}", names))
        return self.lookup_global(name, module, span)

    def eval_TupleIndex(self, e, env):
        v = self.eval(e.value, env)
        if not isinstance(v, tuple):
            raise TypeError_(f"`.{e.index}` needs a tuple, got {describe(v)}", e.span)
        if e.index >= len(v):
            raise TypeError_(
                f"tuple index {e.index} is out of range for a tuple of {len(v)} element{'s' * (len(v) != 1)}", e.span
            )
        return v[e.index]

    def eval_If(self, e, env):
        c = self.eval(e.cond, env)
        if not (is_tensor(c) and c.type == TensorType(DType.BOOL, ())):
            raise TypeError_(f"the condition of `if` must be a bool, got {describe(c)}", e.cond.span)
        if c.known is not None:  # decided at compile time: only the branch taken is traced
            return self.eval(e.then if bool(c.known) else e.else_, env)
        return self.cond(c, lambda: self.eval(e.then, env), lambda: self.eval(e.else_, env), e.span)

    def cond(self, c: Var, then_fn, else_fn, span):
        """A data-dependent branch: both sides traced into bodies of one `cond` op."""
        results, builders, bottoms = [], [], []
        for fn in (then_fn, else_fn):
            bld = Builder(self.b)
            saved, self.b = self.b, bld
            try:
                results.append(fn())
                builders.append(bld)
            except Bottom as bot:
                bottoms.append(bot)
            finally:
                self.b = saved
        if bottoms:  # See Note [Recursive return types]
            if len(bottoms) == 2:
                raise bottoms[0]
            self.taints[-1].add(bottoms[0].spec)
            return self._inline_branch(builders[0], results[0])
        (t_leaves, t_tree), (f_leaves, f_tree) = flatten(results[0]), flatten(results[1])
        if (
            t_tree != f_tree
            or not all(map(is_tensor, t_leaves + f_leaves))
            or any(a.type.shape != b.type.shape for a, b in zip(t_leaves, f_leaves))
        ):
            self.ask_static(c)  # a condition from a bool argument: decide the branch at compile time
        if t_tree != f_tree or not all(map(is_tensor, t_leaves + f_leaves)):
            raise TypeError_(
                f"the branches of `if` have different types: {describe(results[0])} and {describe(results[1])}", span
            )
        for k, (a, b) in enumerate(zip(t_leaves, f_leaves)):
            if a.type.shape != b.type.shape:
                raise ShapeError(
                    f"the branches of `if` have different shapes: {describe(results[0])} and {describe(results[1])}",
                    span,
                )
            if a.type.dtype != b.type.dtype:
                dt = promote(a.type.dtype, b.type.dtype)
                for bld, leaves in ((builders[0], t_leaves), (builders[1], f_leaves)):
                    saved, self.b = self.b, bld
                    leaves[k] = self.convert(leaves[k], dt)
                    self.b = saved
        bodies, operands = close_together(builders, [t_leaves, f_leaves])
        outs = self.emit_n(cond.cond_p, [c] + operands, branches=tuple(bodies))
        return unflatten(t_tree, outs)

    def _inline_branch(self, bld: Builder, result):
        """Take one traced branch as the value of the `if`: its sibling raised Bottom, so this
        trace is only used for its types and will be traced again."""
        ren = {inner: outer for outer, inner in bld.captures.values()}
        for eqn in bld.eqns:
            eqn.inputs = [ren.get(x, x) for x in eqn.inputs]
            self.b.eqns.append(eqn)
            self.b.defined.update(o.id for o in eqn.outs)
        leaves, tree = flatten(result)
        return unflatten(tree, [ren.get(x, x) if isinstance(x, Var) else x for x in leaves])

    def eval_UnaryOp(self, e, env):
        if e.op == "-" and isinstance(e.operand, n.Num):
            # A negative number is a literal too, and adapts to f32 as one: f32(x) * -0.5 is f32.
            return self.const(-e.operand.value, DType.F64 if e.operand.is_float else DType.I64)
        x = self.eval(e.operand, env)
        if e.op == "not":
            return logical_not(self, x)
        return arith_unary(self, ew.neg_p, self.tensor(x, e.operand.span))

    def eval_BinOp(self, e, env):
        if e.op in ("and", "or"):
            return short_circuit(self, e, env)
        a = self.eval(e.left, env)
        b = self.eval(e.right, env)
        a, b = self.tensor(a, e.left.span), self.tensor(b, e.right.span)
        if e.op == "@":
            return matmul(self, a, b)
        return BINOPS[e.op](self, a, b)

    def eval_Call(self, e, env):
        f = self.eval(e.fn, env)
        args = [self.eval(a, env) for a in e.args]
        kwargs = {}
        for k in e.kwargs:
            if k.name in kwargs:
                raise TypeError_(f"keyword argument `{k.name}` given twice", k.span)
            kwargs[k.name] = self.eval(k.value, env)
        return self.call(f, args, kwargs, e.span, arg_spans=[a.span for a in e.args])

    def eval_Index(self, e, env):
        v = self.eval(e.value, env)
        items = []
        for it in e.indices:
            if isinstance(it, n.Slice):
                lo, hi, step = (
                    None if part is None else self.static_int(self.eval(part, env), part.span, f"a slice {what}")
                    for part, what in ((it.lo, "bound"), (it.hi, "bound"), (it.step, "step"))
                )
                if step == 0:
                    raise ShapeError("a slice step cannot be 0", it.step.span)
                items.append(slice(lo, hi, step))
            else:
                items.append((self.eval(it, env), it.span))
        return index(self, self.tensor(v, e.value.span), items)

    def eval_Comprehension(self, e, env):
        def go(k, env):
            if k == len(e.iters):
                return self.eval(e.body, env)
            it = e.iters[k]
            lo = self.static_int(self.eval(it.lo, env), it.lo.span, "a comprehension bound")
            hi = self.static_int(self.eval(it.hi, env), it.hi.span, "a comprehension bound")

            def body(i, _rows):
                iv = i if lo == 0 else self.emit(ew.add_p, [i, self.const(lo, DType.I64)])
                return go(k + 1, {**env, it.name: iv})

            return self.map_loop(max(hi - lo, 0), body, [])

        return go(0, env)

    # --- calls ---------------------------------------------------------------------------------

    def call(self, f, args, kwargs, span, arg_spans=None):
        """Apply a function value to traced arguments."""
        if isinstance(f, Builtin | Partial):
            saved = self.span, self.arg_spans
            self.span = span or self.span
            self.arg_spans = arg_spans or []
            try:
                return f.impl(self, args, kwargs)
            except DiffcError as err:
                if err.span is None:
                    err.span = span
                raise
            finally:
                self.span, self.arg_spans = saved
        if not isinstance(f, Closure | FnRef):
            raise TypeError_(f"this is {describe(f)}, not a function: it cannot be called", span)
        if kwargs:
            raise TypeError_(f"`{f.name}` takes no keyword arguments", span)
        params = f.params if isinstance(f, Closure) else f.fndef.params
        if len(args) != len(params):
            raise TypeError_(
                f"`{f.name}` takes {len(params)} argument{'s' * (len(params) != 1)} "
                f"but {len(args)} {'were' if len(args) != 1 else 'was'} given",
                span,
            )
        try:
            if isinstance(f, FnRef):
                check_annotations(f.fndef, args, arg_spans or [span] * len(args), span)
                if id(f.fndef) in self.recursive_fns:
                    return self.call_recursive(f, args, span)
                env = {"__module__": f.module}
                body = f.fndef.body
            else:
                env = dict(f.env)
                body = f.body
            for p, a in zip(params, args):
                env[p.name] = a
            result = self.eval(body, env)
            if isinstance(f, FnRef) and f.fndef.ret is not None:
                check_return(f.fndef, result)
            return result
        except DiffcError as err:  # an error in another file shows this call too (Note [Call sites] in errors.py)
            err.called_from(span)
            raise

    def call_recursive(self, f: FnRef, args, span):
        leaves, tree = flatten(tuple(args))
        for v in leaves:
            if not is_tensor(v):
                raise TypeError_(
                    f"the recursive function `{f.name}` cannot take {describe(v)} as an argument "
                    "(recursive functions take arrays, numbers, tuples and records)",
                    span,
                )
        key = (id(f.fndef), tree, tuple(v.type for v in leaves))
        spec = self.specs.get(key)
        if spec is None and sum(1 for s in self.specs.values() if s.fndef is f.fndef and not s.done) > MAX_PENDING:
            raise TypeError_(
                f"the recursive function `{f.name}` calls itself with ever new argument types "
                f"(now {describe(tuple(args))}): recursion must keep the shapes of its arguments",
                span,
            )
        if spec is None:
            spec = self.specialise(f, key, tree, [v.type for v in leaves])
        if spec.ret is None:
            raise Bottom(spec)
        ret_tree, ret_types = spec.ret
        outs = self.emit_n(call.call_p, leaves, func=spec.name, out_types=tuple(ret_types))
        return unflatten(ret_tree, outs)

    def specialise(self, f: FnRef, key, tree, types) -> Spec:
        """Trace a recursive function for one argument signature into its own Func."""
        name = f"{f.name}.{sum(1 for s in self.specs.values() if s.fndef is f.fndef)}"
        spec = Spec(f.fndef, f.module, key, name)
        self.specs[key] = spec
        saved = (self.b, self.root, self.span)
        try:
            for _ in range(MAX_RETRACE):
                self.b = self.root = Builder()
                self.taints.append(set())
                try:
                    params = [self.b.param(t) for t in types]
                    env = {"__module__": f.module}
                    for p, a in zip(f.fndef.params, unflatten(tree, params)):
                        env[p.name] = a
                    result = self.eval(f.fndef.body, env)
                except Bottom as bot:
                    self.taints.pop()
                    if bot.spec is spec:
                        raise TypeError_(
                            f"the recursive function `{f.name}` never returns: every path through "
                            "it calls itself again (it needs a base case)",
                            f.fndef.span,
                        ) from None
                    del self.specs[key]
                    raise
                taints = self.taints.pop()
                leaves, rtree = flatten(result)
                leaves = [self.tensor(x, f.fndef.span) for x in leaves]
                ret = (rtree, [x.type for x in leaves])
                others = taints - {spec}
                if others:  # provisional: an enclosing function's type is not known yet
                    self.taints[-1] |= others
                    del self.specs[key]
                    spec.ret = ret
                    return spec
                assumed, spec.ret = spec.ret, ret
                if spec not in taints and assumed in (None, ret):
                    body, _ = self.b.finish(leaves)
                    self.program.funcs[spec.name] = Func(spec.name, body, f.fndef.span, recursive=True)
                    spec.done = True
                    return spec
            raise TypeError_(f"cannot settle the return type of the recursive function `{f.name}`", f.fndef.span)
        finally:
            self.b, self.root, self.span = saved

    # --- loops ----------------------------------------------------------------------------------

    def trace_body(self, param_types, fn, known=None):
        """Trace fn(*params) in a nested builder. Returns (body, captured, out_tree)."""
        bld = Builder(self.b)
        saved, self.b = self.b, bld
        try:
            params = [bld.param(t, k) for t, k in zip(param_types, known or [None] * len(param_types))]
            result = fn(*params)
            leaves, tree = flatten(result)
            leaves = [self.tensor(x, self.span) for x in leaves]
            body, captured = bld.finish(leaves)
        finally:
            self.b = saved
        return body, captured, tree

    def map_loop(self, length: int, fn, xs: list):
        """Stack fn(i, rows) over i in 0..length, rows = the i-th rows of the arrays xs."""
        types = [TensorType(DType.I64, ())] + [x.type.with_shape(x.type.shape[1:]) for x in xs]

        def body_fn(i, *rows):
            i.range = (0, length)  # the loop index
            return fn(i, list(rows))

        body, captured, tree = self.trace_body(types, body_fn)
        body, captured = hoist(self.b, body, 1 + len(xs), captured, length == 0)
        outs = self.emit_n(map_.map_p, list(xs) + captured, body=body, n=length, num_xs=len(xs))
        return unflatten(tree, outs)

    # --- conversions of values -----------------------------------------------------------------

    def tensor(self, v, span) -> Var:
        if is_tensor(v):
            return v
        raise TypeError_(f"expected an array or a number, got {describe(v)}", span)

    def arg_span(self, i: int) -> Span | None:
        """The span of argument `i` of the built-in being called (the call's when unknown)."""
        return self.arg_spans[i] if i < len(self.arg_spans) else self.span

    def static_int(self, v, span, what: str) -> int:
        if not (is_tensor(v) and v.type.rank == 0 and v.type.dtype in (DType.I64, DType.BOOL)):
            raise TypeError_(f"{what} must be an integer, got {describe(v)}", span)
        if v.known is None:
            self.not_known(v, span, what)
        return int(v.known)

    def not_known(self, v: Var, span, what: str):
        """`v` is needed at compile time but is not known: specialise again with the int and
        bool arguments it comes from static (NeedStatic), or say why it cannot be."""
        self.ask_static(v)
        names = [self.leaf_names[i] for i in self.entry_args_behind(v) if i not in self.static_leaves]
        if names:
            raise TypeError_(
                f"{what} must be known at compile time, but it comes from the argument "
                f"{_names_text(names)}, a run-time value: only an int or bool argument is taken "
                "as a compile-time value, never an array or a float; pass the size as an int "
                "argument, or derive it from a shape (`len(x)`, `shape(x)`)",
                span,
            )
        raise TypeError_(f"{what} must be known at compile time (from shapes, `len`, literals)", span)

    def ask_static(self, v: Var) -> None:
        """Raise NeedStatic if `v` comes from int or bool scalar arguments of the entry that
        can be taken as compile-time values."""
        wanted = [i for i in self.entry_args_behind(v) if i in self.may_be_static]
        if wanted:
            raise NeedStatic(wanted)

    def entry_args_behind(self, v: Var) -> list[int]:
        """The leaves of the entry's arguments that `v` is computed from (an equation's
        output from all its inputs, a captured value from the one outside), in order."""
        made: dict[Var, list[Var]] = dict((inner, [outer]) for inner, outer in self.sources.items())
        b = self.b
        while b is not None:
            for eqn in b.eqns:
                for o in eqn.outs:
                    made[o] = eqn.inputs
            for outer, inner in b.captures.values():
                made[inner] = [outer]
            for outer, here in b.recreated.items():
                made[here] = [outer]
            b = b.parent
        found, stack, seen = set(), [v], set()
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            if x in self.entry_leaves:
                found.add(self.entry_leaves[x])
            stack.extend(made.get(x, ()))
        return sorted(found)

    def stack(self, items: list[Var], axis: int) -> Var:
        dt = items[0].type.dtype
        for x in items[1:]:
            dt = promote(dt, x.type.dtype)
        shape = items[0].type.shape
        for x in items:
            if x.type.shape != shape:
                raise ShapeError("cannot stack arrays of different shapes: " + ", ".join(str(x.type) for x in items))
        expanded = []
        for x in items:
            x = self.convert(x, dt)
            s = list(shape)
            s.insert(axis, 1)
            expanded.append(self.emit(sh.reshape_p, [x], shape=tuple(s)))
        if len(expanded) == 1:
            return expanded[0]
        return self.emit(sh.concat_p, expanded, axis=axis)


def leaf_names(tree: TreeDef, names: list[str]) -> list[str]:
    """How each leaf of the entry's arguments is named in messages: `n`, `cfg.n`, `pair.0`."""
    out = []

    def go(t, path):
        if t == LEAF:
            out.append(path)
        else:
            for k, c in enumerate(t.children):
                go(c, f"{path}.{t.names[k] if t.kind == 'record' else k}")

    for k, c in enumerate(tree.children):
        go(c, names[k] if k < len(names) else f"argument {k}")
    return out


def _names_text(names: list[str]) -> str:
    return ", ".join(f"`{x}`" for x in names) if len(names) > 1 else f"`{names[0]}`"


def _literal_array(e: n.ArrayLit):
    """The value of an array literal made only of number literals (nested), else None (also
    when nested deeper than an array's rank can be: each level of a deep literal asks again)."""

    def go(x, depth=0):
        if depth > MAX_RANK:
            return None
        if isinstance(x, n.Num):
            return x.value, x.is_float
        if isinstance(x, n.Bool):
            return x.value, None
        if isinstance(x, n.UnaryOp) and x.op == "-" and isinstance(x.operand, n.Num):
            return -x.operand.value, x.operand.is_float
        if isinstance(x, n.ArrayLit) and x.elems:
            vals = [go(y, depth + 1) for y in x.elems]
            if any(v is None for v in vals):
                return None
            return [v for v, _ in vals], any(f for _, f in vals)
        return None

    r = go(e)
    if r is None:
        return None
    try:
        arr = np.array(r[0])
    except ValueError:
        return None
    if arr.dtype == object:
        return None
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    if _has_float(e):
        arr = arr.astype(np.float64)
    return arr


def _has_float(e) -> bool:
    if isinstance(e, n.Num):
        return e.is_float
    if isinstance(e, n.UnaryOp):
        return _has_float(e.operand)
    if isinstance(e, n.ArrayLit):
        return any(_has_float(x) for x in e.elems)
    return False


def check_annotations(fndef: n.FnDef, args, arg_spans, call_span):
    """Parameter annotations: dtypes and ranks must match; dimension names bind at the call."""
    dims: dict[str, tuple[int, str]] = {}
    for p, a, sp in zip(fndef.params, args, arg_spans):
        ann = p.ann
        if ann is None:
            continue
        if not is_tensor(a):
            raise TypeError_(
                f"parameter `{p.name}` of `{fndef.name}` is declared {_ann_str(ann)}, got {describe(a)}", sp
            )
        if a.type.dtype.value != ann.dtype:
            raise TypeError_(f"parameter `{p.name}` of `{fndef.name}` is declared {_ann_str(ann)}, got {a.type}", sp)
        if ann.dims is None:
            continue
        if len(ann.dims) != a.type.rank:
            raise ShapeError(f"parameter `{p.name}` of `{fndef.name}` is declared {_ann_str(ann)}, got {a.type}", sp)
        for d, size in zip(ann.dims, a.type.shape):
            if isinstance(d, int):
                if d != size:
                    raise ShapeError(
                        f"parameter `{p.name}` of `{fndef.name}` is declared {_ann_str(ann)}, got {a.type}", sp
                    )
            elif d in dims and dims[d][0] != size:
                raise ShapeError(
                    f"dimension `{d}` of `{fndef.name}` is {dims[d][0]} (from `{dims[d][1]}`) but "
                    f"{size} in `{p.name}` ({a.type})",
                    sp,
                )
            else:
                dims.setdefault(d, (size, p.name))


def check_return(fndef: n.FnDef, result):
    """The declared return type `-> f64[n]` (dims named by parameters must agree)."""
    ann = fndef.ret
    bad = not is_tensor(result) or result.type.dtype.value != ann.dtype
    if not bad and ann.dims is not None:
        bad = len(ann.dims) != result.type.rank or any(
            isinstance(d, int) and d != s for d, s in zip(ann.dims, result.type.shape)
        )
    if bad:
        raise TypeError_(
            f"`{fndef.name}` is declared to return {_ann_str(ann)}, but it returns {describe(result)}", ann.span
        )


def _ann_str(ann: n.TypeAnn) -> str:
    return ann.dtype if ann.dims is None else f"{ann.dtype}[{', '.join(map(str, ann.dims))}]"


# Note [Inlining]
# ~~~~~~~~~~~~~~~
# Calls of non-recursive functions and lambdas are traced in place: the callee's body is
# evaluated with its parameters bound to the traced arguments. This is what removes closures
# and function values before the IR exists (Dex specialises until first order; Futhark
# defunctionalises), and it lets every call site be specialised to its own shapes.
#
# Note [Recursive return types]
# ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
# A recursive function is traced once per argument signature into its own Func. While its
# body is traced, a call to itself needs the return type, which is not known yet: such a call
# raises Bottom, the `if` around it catches it and takes the type of its other branch (the
# base case), and the body is traced again with that return type assumed, until the assumed
# and traced types agree. Mutual recursion propagates the unknown type outward ("taints"):
# a function whose body depends on an enclosing function's unknown type is provisional and is
# traced again when that type is known. A function whose every path raises Bottom has no
# base case, and that is reported at compile time.
#
# Note [Static arguments]
# ~~~~~~~~~~~~~~~~~~~~~~~~~
# The entry function's arguments are run-time values: its code is compiled for their types
# and shapes only. But `fn init(k, n) = normal(k, [n, 3])` needs n at compile time. So an int
# or bool scalar argument given with its value (from Python, `--arg n=64`) is first traced as
# a run-time value, and when tracing needs a compile-time value (static_int, a shape, the
# condition of an `if` whose branches differ in shape) that is not known, the arguments it
# is computed from are found by walking back through the equations (entry_args_behind); if
# some of them are such ints or bools, NeedStatic names them and specialise_static traces again
# with them as Static leaves of the signature: parameters whose value is known. Only the
# arguments actually needed become static, so a loop counter `i` passed in does not compile
# once per value; and the value is part of the signature, so of the cache key and of the
# Python API's per-signature table. An array (even a one-element int array) or a float never
# becomes static: its error says where the value comes from and what to pass instead.
# A call from DFL needs none of this: a literal argument is known in the inlined callee.

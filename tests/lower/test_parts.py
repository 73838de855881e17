"""A long entry function is lowered as a chain of never-inlined parts (Note [Parts] in
lower/llvm.py), so that LLVM optimises pieces of a bounded size: the parts give the same
numbers as NumPy, pass scalars, booleans and outputs between them, stop at a failure inside
one of them, and are never cut through a fused (lazy) chain."""

from __future__ import annotations

import re

import numpy as np
import pytest

import diffc
from diffc.errors import BoundsError
from diffc.lower import llvm as lower_llvm
from diffc.lower.emit import fusable_values
from diffc.pipeline import to_ir
from diffc.pytree import unflatten
from diffc.runtime.values import type_of

LAYERS = 12  # well over SPLIT_ABOVE equations in the gradient program


def mlp_source(layers: int) -> str:
    lines = ["fn loss(p, x) {", "    let h0 = x;"]
    lines += [f"    let h{i + 1} = tanh(h{i} @ p.w{i} + p.b{i});" for i in range(layers)]
    lines += [f"    sum(h{layers} * h{layers})", "}"]
    lines += ["fn flagged(p, x) {", "    let l = loss(p, x);", "    (l, l > 1.0, l)", "}"]
    lines += ["fn pick(p, x, i) {", "    let h = x @ p.w0;"]
    lines += [f"    let h = tanh(h @ p.w{i} + p.b{i});" for i in range(layers)]
    lines += ["    h[i, 0]", "}"]
    return "\n".join(lines) + "\n"


def mlp_data(layers: int, varied: bool = False):
    """Parameters and input of the MLP: every layer 6 wide, or each one wider than the last
    (`varied`: no two layers alike, nothing repeats)."""
    rng = np.random.default_rng(0)
    width = [6 + i if varied else 6 for i in range(layers + 1)]
    p = {f"w{i}": rng.standard_normal((width[i], width[i + 1])) * 0.4 for i in range(layers)}
    p.update({f"b{i}": rng.standard_normal(width[i + 1]) * 0.1 for i in range(layers)})
    return p, rng.standard_normal((3, 6))


def numpy_value_and_grad(p, x, layers: int):
    hs = [x]
    for i in range(layers):
        hs.append(np.tanh(hs[-1] @ p[f"w{i}"] + p[f"b{i}"]))
    grad, dh = {}, 2 * hs[-1]
    for i in reversed(range(layers)):
        dz = dh * (1 - hs[i + 1] ** 2)
        grad[f"w{i}"], grad[f"b{i}"] = hs[i].T @ dz, dz.sum(axis=0)
        dh = dz @ p[f"w{i}"].T
    return float(np.sum(hs[-1] ** 2)), grad


def assert_numpy_value_and_grad(got, p, x, layers: int):
    """(value, gradient) of the MLP's loss as NumPy computes them."""
    value, grad = got
    want_value, want_grad = numpy_value_and_grad(p, x, layers)
    assert float(value) == pytest.approx(want_value, rel=1e-12)
    for k, g in want_grad.items():
        np.testing.assert_allclose(grad[k], g, rtol=1e-10, atol=1e-12)


def program(fn, *args):
    """(Program, output TreeDef) of a diffc Function for these arguments, before lowering."""
    arrays, (tree, _) = fn.signature(*args)
    types = unflatten(tree, [type_of(a) for a in arrays])
    return to_ir(fn.module.ast, fn.name, types, transform=fn.transform)


def gradient_program(layers: int, varied: bool = False):
    m = diffc.compile(mlp_source(layers))
    return program(diffc.value_and_grad(m.loss), *mlp_data(layers, varied))


def test_long_gradient_program_is_lowered_in_parts():
    prog, out_tree = gradient_program(LAYERS)
    assert len(prog.main.body.eqns) > lower_llvm.SPLIT_ABOVE
    text = str(lower_llvm.lower_program(prog, out_tree).module)
    parts = re.findall(r'^define internal void @"dfl\.main\.part\d+"\(.*\)(.*)$', text, re.MULTILINE)
    assert len(parts) >= 2
    assert all("noinline" in attributes for attributes in parts)


def test_short_program_is_one_function():
    prog, out_tree = gradient_program(2)
    text = str(lower_llvm.lower_program(prog, out_tree).module)
    assert "dfl.main.part" not in text


def test_parts_give_numpy_value_and_gradient():
    m = diffc.compile(mlp_source(LAYERS))
    p, x = mlp_data(LAYERS)
    assert_numpy_value_and_grad(diffc.value_and_grad(m.loss)(p, x), p, x, LAYERS)


def test_scalars_booleans_and_repeated_outputs_cross_parts():
    layers = 2 * LAYERS  # the forward program alone is long enough to be cut
    m = diffc.compile(mlp_source(layers))
    p, x = mlp_data(layers)
    prog, _ = program(m.flagged, p, x)
    assert lower_llvm.body_parts(prog.main.body)
    want, _ = numpy_value_and_grad(p, x, layers)
    value, big, again = m.flagged(p, x)
    assert float(value) == float(again) == pytest.approx(want, rel=1e-12)
    assert bool(big) == (want > 1.0)


def test_failure_in_a_late_part_is_located():
    m = diffc.compile(mlp_source(LAYERS))
    p, x = mlp_data(LAYERS)
    assert np.isfinite(float(diffc.grad(m.pick)(p, x, 2)["w0"].sum()))
    with pytest.raises(BoundsError) as e:
        diffc.grad(m.pick)(p, x, 7)
    assert ":" in str(e.value) and "h[i, 0]" in str(e.value)


def test_no_cut_inside_a_fused_chain():
    prog, _ = gradient_program(LAYERS)
    body = prog.main.body
    fusable = fusable_values(body, lazy_outs=True)
    parts = lower_llvm.body_parts(body)
    assert len(parts) >= 2 and sum(map(len, parts)) == len(body.eqns)
    made_in = {o.id: k for k, part in enumerate(parts) for e in part for o in e.outs}
    for k, part in enumerate(parts):
        for e in part:
            for x in e.inputs:
                if x.id in fusable:
                    assert made_in[x.id] == k


def test_a_lazy_value_read_far_apart_does_not_keep_a_part_growing():
    # `a` is big and cheap, read twice: recomputed where it is read (lazy), at the start and at
    # the end; a part that reaches MAX_PART_EQNS is cut all the same, and `a` crosses the cut
    # computed into a buffer
    steps = 3 * lower_llvm.MAX_PART_EQNS
    lines = ["fn f(x, w) {", "    let a = x * 2.0 + 1.0;", "    let h0 = a[0] @ w;"]
    lines += [f"    let h{i + 1} = tanh(h{i} @ w);" for i in range(steps)]
    lines += [f"    sum(h{steps}) + sum(a * a)", "}"]
    m = diffc.compile("\n".join(lines) + "\n")
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((128, 128)), rng.standard_normal((128, 128)) * 0.1
    prog, _ = program(m.f, x, w)
    body = prog.main.body
    a = body.eqns[1].outs[0]
    assert a.id in fusable_values(body, lazy_outs=True)
    parts = lower_llvm.body_parts(body)
    assert len(parts) >= 3 and max(map(len, parts)) <= lower_llvm.MAX_PART_EQNS
    a_np = x * 2.0 + 1.0
    h = a_np[0] @ w
    for _ in range(steps):
        h = np.tanh(h @ w)
    assert float(m.f(x, w)) == pytest.approx(float(np.sum(h) + np.sum(a_np * a_np)), rel=1e-12)


def test_a_cut_forced_by_a_lazy_value_crosses_the_fewest_lazy_bytes(monkeypatch):
    # the gradient of a transformer block: the layer norm's output is lazy and read again by the
    # backward, so the first part grows to MAX_PART_EQNS with no clean cut. It is cut where the
    # fewest bytes of lazy values are computed into buffers: it was cut at MAX_PART_EQNS, where
    # the two terms of GELU's derivative crossed, each [b t, d_ff], before the sum reading them
    source = """import nn
fn loss(p, x, mask) {
    let y = nn.transformer_encoder(p, x, mask, 2);
    sum(y * y)
}
"""
    rng = np.random.default_rng(0)
    d, d_ff = 64, 256  # (values of 64 KiB and more: RECOMPUTE_MIN_BYTES)
    attn = {k: rng.standard_normal((d, d)) * 0.3 for k in ("wq", "wk", "wv", "wo")}
    attn.update({k: rng.standard_normal(d) * 0.1 for k in ("bq", "bk", "bv", "bo")})
    norm = {"g": np.ones(d), "b": np.zeros(d)}
    ff1 = {"w": rng.standard_normal((d_ff, d)) * 0.3, "b": np.zeros(d_ff)}
    ff2 = {"w": rng.standard_normal((d, d_ff)) * 0.3, "b": np.zeros(d)}
    p = {"ln1": norm, "attn": attn, "ln2": dict(norm), "ff1": ff1, "ff2": ff2}
    x, mask = rng.standard_normal((2, 64, d)), np.tril(np.ones((64, 64), dtype=bool))
    m = diffc.compile(source)
    prog, _ = program(diffc.value_and_grad(m.loss), p, x, mask)
    body = prog.main.body
    fusable = fusable_values(body, lazy_outs=True)
    last_read = {x.id: k for k, e in enumerate(body.eqns) for x in e.inputs}
    monkeypatch.setattr(lower_llvm, "_views_where_read", lambda parts, outs: parts)  # (the cuts as made)
    parts = lower_llvm.body_parts(body)
    assert len(parts) >= 2 and len(parts[0]) < lower_llvm.MAX_PART_EQNS
    start = 0
    for part in parts[:-1]:
        cut = start + len(part)

        def across(c, start=start):
            return lower_llvm._lazy_bytes_across(body.eqns[start:c], c, fusable, last_read)

        window = range(start + lower_llvm.PART_EQNS, min(start + lower_llvm.MAX_PART_EQNS, len(body.eqns)) + 1)
        assert across(cut) == min(map(across, window))
        start = cut
    assert across(len(parts[0])) < 2 * x.shape[0] * x.shape[1] * d_ff * 8


# Note [Repeated parts]: runs of equations that repeat are one function, called once per run


def part_functions(text: str) -> tuple[set[str], list[str]]:
    """(the part functions a module's LLVM IR defines, the part functions dfl.main calls in order)."""
    defined = set(re.findall(r'^define internal void @"(dfl\.main\.part\d+)"', text, re.MULTILINE))
    main = text.split('define internal void @"dfl.main"(', 1)[1].split("\n}\n", 1)[0]
    return defined, re.findall(r'call void @"(dfl\.main\.part\d+)"', main)


def test_repeated_layers_are_one_function_each():
    prog, out_tree = gradient_program(LAYERS)
    defined, called = part_functions(str(lower_llvm.lower_program(prog, out_tree).module))
    # the forward layers, the backward layers, and what is between and around them
    assert len(called) >= 2 * LAYERS and len(defined) <= 6 and set(called) == defined


def test_layers_not_alike_are_not_shared():
    prog, out_tree = gradient_program(LAYERS, varied=True)
    defined, called = part_functions(str(lower_llvm.lower_program(prog, out_tree).module))
    assert len(called) >= 2 and len(defined) == len(called)
    m = diffc.compile(mlp_source(LAYERS))
    p, x = mlp_data(LAYERS, varied=True)
    assert_numpy_value_and_grad(diffc.value_and_grad(m.loss)(p, x), p, x, LAYERS)


def test_only_parts_that_may_be_alike_are_printed(monkeypatch):
    # a part whose equations (primitive, parameters, types) no other part has gets a key of its
    # own without its text being printed; the repeated layers are still one function each
    printed, real = [], lower_llvm.part_key
    monkeypatch.setattr(lower_llvm, "part_key", lambda eqns: printed.append(eqns) or real(eqns))
    prog, out_tree = gradient_program(LAYERS, varied=True)
    parts = lower_llvm.body_parts(prog.main.body)
    printed.clear()
    keys = lower_llvm._part_keys(parts)
    assert printed == [] and len(set(keys)) == len(parts)
    prog, out_tree = gradient_program(LAYERS)
    parts = lower_llvm.body_parts(prog.main.body)
    printed.clear()
    keys = lower_llvm._part_keys(parts)
    assert LAYERS <= len(printed) < len(parts) and len(set(keys)) < len(parts)
    assert [k for k, eqns in zip(keys, parts) if any(eqns is e for e in printed)] == [real(e) for e in printed]
    defined, called = part_functions(str(lower_llvm.lower_program(prog, out_tree).module))
    assert len(called) >= 2 * LAYERS and len(defined) <= 6 and set(called) == defined


def test_a_value_read_later_from_one_repetition_only():
    # z3, fused into its layer's tanh elsewhere, is also read at the end: the one function of
    # the layers computes it for every layer, and z3 is right
    layers = 3 * LAYERS
    lines = ["fn f(p, x) {", "    let h0 = x;"]
    for i in range(layers):
        lines += [f"    let z{i} = h{i} @ p.w{i} + p.b{i};", f"    let h{i + 1} = tanh(z{i});"]
    lines += [f"    sum(h{layers}) + sum(z3 * z3)", "}"]
    m = diffc.compile("\n".join(lines) + "\n")
    p, x = mlp_data(layers)
    prog, out_tree = program(m.f, p, x)
    defined, called = part_functions(str(lower_llvm.lower_program(prog, out_tree).module))
    assert len(called) >= layers and len(defined) <= 3
    h, z3 = x, None
    for i in range(layers):
        z = h @ p[f"w{i}"] + p[f"b{i}"]
        z3 = z if i == 3 else z3
        h = np.tanh(z)
    assert float(m.f(p, x)) == pytest.approx(float(np.sum(h) + np.sum(z3 * z3)), rel=1e-12)


def test_repetitions_that_can_fail_are_not_shared():
    # each layer reads h[i, 0]: a failure names its own layer's line, so no part is shared
    layers = 2 * LAYERS
    lines = ["fn f(p, x, i) {", "    let h0 = x;"]
    lines += [f"    let h{k + 1} = tanh(h{k} @ p.w{k} + p.b{k}) + h{k}[i, 0];" for k in range(layers)]
    lines += [f"    sum(h{layers})", "}"]
    m = diffc.compile("\n".join(lines) + "\n")
    p, x = mlp_data(layers)
    prog, out_tree = program(m.f, p, x, 1)
    assert any(len(part) < lower_llvm.PART_EQNS for part in lower_llvm.body_parts(prog.main.body))
    defined, called = part_functions(str(lower_llvm.lower_program(prog, out_tree).module))
    assert len(defined) == len(called) >= layers
    with pytest.raises(BoundsError) as e:
        m.f(p, x, 3)
    assert ":3:" in str(e.value) and "h0[i, 0]" in str(e.value)


@pytest.mark.parametrize("seed", range(6))
def test_generated_stacks_agree_with_no_repeated_parts(seed, monkeypatch):
    # layers in a cycle of activations, one of them changed and one of another width (runs that
    # almost repeat), a value read again at the end: the same numbers with parts shared or not
    rng = np.random.default_rng(seed)
    layers, period = int(rng.integers(8, 15)), int(rng.integers(1, 4))
    acts = [["tanh", "sigmoid", "relu"][(i % period + seed) % 3] for i in range(layers)]
    acts[int(rng.integers(layers))] = "sin"
    width = [5] * (layers + 1)
    width[int(rng.integers(1, layers))] = 7
    read = int(rng.integers(1, layers))
    lines = ["fn loss(p, x) {", "    let h0 = x;"]
    lines += [f"    let h{i + 1} = {a}(h{i} @ p.w{i} + p.b{i});" for i, a in enumerate(acts)]
    lines += [f"    sum(h{layers} * h{layers}) + sum(h{read})", "}"]
    source = "\n".join(lines) + "\n"
    p = {f"w{i}": rng.standard_normal((width[i], width[i + 1])) * 0.5 for i in range(layers)}
    p.update({f"b{i}": rng.standard_normal(width[i + 1]) * 0.1 for i in range(layers)})
    x = rng.standard_normal((4, 5))
    vg = diffc.value_and_grad(diffc.compile(source).loss)
    prog, out_tree = program(vg, p, x)
    defined, called = part_functions(str(lower_llvm.lower_program(prog, out_tree).module))
    assert len(defined) < len(called)  # some parts shared
    value, grad = vg(p, x)
    monkeypatch.setattr(lower_llvm, "_repeats", lambda eqns, lazy_reach: [])
    value2, grad2 = diffc.value_and_grad(diffc.compile(source + "# unshared\n").loss)(p, x)
    assert float(value) == pytest.approx(float(value2), rel=1e-13)
    for k in grad:
        np.testing.assert_allclose(grad[k], grad2[k], rtol=1e-12, atol=1e-14)


TRANSFORMER = """import nn
fn loss(p, x, mask) = sum(nn.transformer_encoder(p, x, mask, 2) ** 2)
"""


def transformer_data(batch=2, t=8, d=16, d_ff=32):
    rng = np.random.default_rng(3)
    dense = lambda n_out, n_in: {"w": rng.standard_normal((n_out, n_in)) / 4, "b": rng.standard_normal(n_out) / 4}  # noqa: E731
    norm = lambda: {"g": 1 + rng.standard_normal(d) / 4, "b": rng.standard_normal(d) / 4}  # noqa: E731
    attn = {f"w{c}": rng.standard_normal((d, d)) / 4 for c in "qkvo"}
    attn.update({f"b{c}": rng.standard_normal(d) / 4 for c in "qkvo"})
    p = {"ln1": norm(), "attn": attn, "ln2": norm(), "ff1": dense(d_ff, d), "ff2": dense(d, d_ff)}
    return p, rng.standard_normal((batch, t, d)), np.tril(np.ones((t, t), bool))


def test_views_are_made_where_they_are_read(monkeypatch):
    """A view (reshape, transpose, broadcast) that a later part reads is made by that part from
    its operand, which crosses instead (See Note [Views across parts]): no part's result is a
    view but a reshape that copies (attention's heads split from a projection, read by the
    forward's map and again by its backward), and the numbers are those of the program in one
    piece."""
    m = diffc.compile(TRANSFORMER)
    args = transformer_data()
    prog, _ = program(diffc.value_and_grad(m.loss), *args)
    parts = lower_llvm.body_parts(prog.main.body)
    assert len(parts) >= 2
    made_in = {}
    for k, part in enumerate(parts):
        for e in part:
            for o in e.outs:
                made_in.setdefault(o.id, (k, e))
    made_by = {o.id: e for e in prog.main.body.eqns for o in e.outs}
    crossing, copies = 0, set()
    for j, part in enumerate(parts):
        made = {o.id for e in part for o in e.outs}
        for x in {x.id for e in part for x in e.inputs} - made:
            if x in made_in:
                crossing += 1
                e = made_in[x][1]
                if lower_llvm._copies(e, made_by):
                    copies.add(x)
                assert not e.prim.view or lower_llvm._copies(e, made_by), e
    assert crossing and len(copies) >= 3  # (the heads of q, k and v at least)
    split = diffc.value_and_grad(m.loss)(*args)
    monkeypatch.setattr(lower_llvm, "SPLIT_ABOVE", 10**9)
    whole = diffc.value_and_grad(diffc.compile(TRANSFORMER + "# in one piece\n").loss)(*args)
    assert float(split[0]) == pytest.approx(float(whole[0]), rel=1e-13)
    for name in ("ln1", "attn", "ln2", "ff1", "ff2"):
        for leaf in split[1][name]:
            np.testing.assert_allclose(split[1][name][leaf], whole[1][name][leaf], rtol=1e-12, atol=1e-13)

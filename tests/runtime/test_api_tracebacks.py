"""A DiffcError raised to Python (diffc.load, diffc.compile, a call of a compiled function,
evaluate) ends the user's traceback at the API boundary: no frames of diffc's insides, no
chained exception, the same error object with its span and message."""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
import pytest

import diffc

PACKAGE = Path(diffc.__file__).resolve().parent


def diffc_frames(e: BaseException) -> list[str]:
    """`file:function` of each frame of diffc's in the error's traceback."""
    frames = traceback.extract_tb(e.__traceback__)
    return [f"{Path(f.filename).name}:{f.name}" for f in frames if Path(f.filename).resolve().is_relative_to(PACKAGE)]


def assert_trimmed(e: diffc.DiffcError):
    assert len(diffc_frames(e)) <= 1, diffc_frames(e)  # at most the boundary's own `raise`
    assert all(f.startswith("api.py:") for f in diffc_frames(e))
    assert e.__cause__ is None and e.__suppress_context__
    assert "Traceback" not in "".join(traceback.format_exception(e)).split("Traceback", 1)[1]


def test_load_of_a_program_with_a_mistake(tmp_path):
    (tmp_path / "helper.dfl").write_text("fn f(x) = x + nope\n")
    p = tmp_path / "p.dfl"
    p.write_text("import helper\nfn main() = helper.f(1.0)\n")
    with pytest.raises(diffc.DiffcNameError) as info:
        diffc.load(p)
    assert_trimmed(info.value)
    assert info.value.span.line == 1 and "nope" in info.value.message


@pytest.mark.parametrize(
    "source, call, error",
    [
        ("fn f(x) = x @ [1.0]", lambda m: m.f(np.array([1.0, 2.0])), diffc.ShapeError),
        ("fn f(xs, i) = xs[i]", lambda m: m.f(np.array([1.0, 2.0]), 5), diffc.BoundsError),
        ("fn f(x) = x", lambda m: m.f(1.0, 2.0), diffc.UsageError),
        ("fn f(x) = x", lambda m: m.evaluate("f(nope)"), diffc.DiffcNameError),
        ("fn f(x) = (x", None, diffc.DiffcSyntaxError),
    ],
)
def test_compile_and_calls(source, call, error):
    with pytest.raises(error) as info:
        m = diffc.compile(source)
        call(m)
        call(m)  # (a second call may take another path: the signature is compiled by now)
    assert_trimmed(info.value)
    assert info.value.span is not None or error is diffc.UsageError


def test_a_call_that_failed_once_and_then_fails_again_through_the_direct_entry():
    m = diffc.compile("fn f(xs, i) = xs[i]")
    xs = np.array([1.0, 2.0])
    assert m.f(xs, 1) == 2.0 and m.f(xs, 1) == 2.0  # (the direct entry takes the calls now)
    with pytest.raises(diffc.BoundsError) as info:
        m.f(xs, 7)
    assert_trimmed(info.value)

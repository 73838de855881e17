"""The golden-file plugin's own pieces (diffc/testing.py, used by support/golden.py): a comparator that passed anything
would make every program test vacuous."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffc.testing import dumps, mismatches, read_headers, rewrite_line, to_jsonlike


def test_to_jsonlike():
    value = (1, 2.5, True, np.array([[1, 2]]), {"a": np.float32(0.5), "b": (np.array([True]),)}, ())
    assert to_jsonlike(value) == [1, 2.5, True, [[1, 2]], {"a": 0.5, "b": [[True]]}, []]
    assert type(to_jsonlike(np.array([1.0]))[0]) is float
    assert type(to_jsonlike(np.int64(3))) is int


@pytest.mark.parametrize(
    "got, want",
    [
        (1.0, 1.0),
        (1.0 + 1e-12, 1.0),
        (1e-13, 0.0),
        (3, 3),
        (True, True),
        ([1, [2.0]], [1, [2.0]]),
        ({"a": 1, "b": [False]}, {"b": [False], "a": 1}),
        (math.nan, math.nan),
        (math.inf, math.inf),
        ([], []),
    ],
)
def test_equal_values_match(got, want):
    assert mismatches(got, want) == []


@pytest.mark.parametrize(
    "got, want",
    [
        (1.0, 1.0 + 1e-8),
        (3, 3.0),
        (3.0, 3),
        (True, 1),
        (1, True),
        (0, False),
        ([1, 2], [1, 2, 3]),
        ({"a": 1}, {"a": 1, "b": 2}),
        ([1.0], 1.0),
        (math.nan, 1.0),
        (1.0, math.nan),
        (math.inf, -math.inf),
        ([[1, 2], [3, 4]], [[1, 2], [3, 5]]),
    ],
)
def test_different_values_do_not_match(got, want):
    assert mismatches(got, want)


def test_mismatch_paths_name_the_place():
    (problem,) = mismatches({"w": [1.0, [2.0, 3.0]]}, {"w": [1.0, [2.0, 4.0]]})
    assert problem.startswith("value.w[1][1]:")


def test_headers_and_rewriting(tmp_path):
    p = tmp_path / "p.dfl"
    p.write_text('# expect: [1, 2.0]\n# prints: ["a"]\n# xfail: some bug\nfn main() = (1, 2.0)\n')
    h = read_headers(p)
    assert h["expect"] == (1, "[1, 2.0]") and h["xfail"] == (3, "some bug")
    assert json.loads(h["prints"][1]) == ["a"]
    rewrite_line(p, 1, "# expect: " + dumps([1, 3.0, math.inf]))
    assert p.read_text().splitlines()[0] == "# expect: [1, 3.0, Infinity]"
    assert p.read_text().endswith("fn main() = (1, 2.0)\n")

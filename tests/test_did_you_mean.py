"""errors.closest: the suggestion after an unknown name, field or keyword (difflib), and no
suggestion when nothing is close."""

from __future__ import annotations

import pytest

from diffc.errors import NameError_, closest, did_you_mean


@pytest.mark.parametrize(
    "name, candidates, want",
    [
        ("totl", ["total", "count"], "total"),
        ("exq", ["exp", "log", "sum"], "exp"),
        ("axs", ["axis"], "axis"),
        ("zzzz", ["total", "count"], None),
        ("x", [], None),
        ("x", ["x"], None),  # (the name itself is not a suggestion)
        ("_tmp", ["_tmp1"], None),  # diffc's own names are never suggested
    ],
)
def test_closest(name, candidates, want):
    assert closest(name, candidates) == want


def test_the_message_ends_with_the_suggestion():
    assert did_you_mean("totl", ["total"]) == "; did you mean `total`?"
    assert did_you_mean("zzzz", ["total"]) == ""
    e = NameError_("unknown variable `totl`", misspelt=("totl", ["total"]))
    assert e.message == "unknown variable `totl`; did you mean `total`?"

"""Every example runs, and every `# gradcheck:` line in an example's header passes: the
derivatives of the examples' scalar functions agree with finite differences."""

import shlex
from pathlib import Path

import pytest

from diffc.cli import main

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.dfl"))
CHECKS = [
    (f, line.split("# gradcheck:", 1)[1].strip())
    for f in EXAMPLES
    for line in f.read_text().splitlines()
    if line.startswith("# gradcheck:")
]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs(path, capsys):
    assert main(["run", str(path)]) == 0
    assert capsys.readouterr().out.strip()


@pytest.mark.parametrize("path,line", CHECKS, ids=[f"{f.stem}:{shlex.split(line)[1]}" for f, line in CHECKS])
def test_example_gradcheck(path, line, capsys):
    code = main(["gradcheck", str(path)] + shlex.split(line))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "all derivatives agree" in out


def test_every_example_has_gradchecks():
    assert {f for f, _ in CHECKS} == set(EXAMPLES)

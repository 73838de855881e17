"""Parameters in and out on the command line: `diffc run --out FILE.npz` writes the run's
value (as diffc.save does), and `--arg p=FILE.npz` reads one back, so that one training run
feeds the next; a bad file or --out path is one message and exit 2 (before the run)."""

from __future__ import annotations

import numpy as np
import pytest

import diffc
from diffc import cli

OK, USAGE = 0, 2

TRAIN = """
fn loss(p, x, y) = sum((p.w * x + p.b - y) ** 2)

fn init() = {w: [0.0, 0.0], b: 0.0, steps: 0}

fn step(p) {
    let x = [1.0, 2.0];
    let y = [3.0, 5.0];
    let g = grad(loss)({w: p.w, b: p.b}, x, y);
    {w: p.w - 0.05 * g.w, b: p.b - 0.05 * g.b, steps: p.steps + 1}
}

fn main(p) = (loss({w: p.w, b: p.b}, [1.0, 2.0], [3.0, 5.0]), p.steps)
"""


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.dfl").write_text(TRAIN)
    return tmp_path / "train.dfl"


def test_a_training_run_feeds_the_next(train, capsys):
    assert run(capsys, "run", train, "--entry", "init", "--out", "p0.npz") == (OK, "", "")
    for k in range(3):
        code, out, err = run(capsys, "run", train, "--entry", "step", "--arg", f"p=p{k}.npz", "--out", f"p{k + 1}.npz")
        assert (code, out, err) == (OK, "", "")
    p3 = diffc.load_tree(train.parent / "p3.npz")
    assert p3["steps"] == 3 and p3["steps"].dtype == np.int64 and p3["w"].shape == (2,)
    losses = []
    for k in range(4):
        code, out, _ = run(capsys, "run", train, "--arg", f"p=p{k}.npz", "--json")
        assert code == OK
        loss, steps = eval(out)  # ([loss, steps] as JSON)
        assert steps == k
        losses.append(loss)
    assert losses[0] == 34.0 and losses == sorted(losses, reverse=True) and losses[3] < losses[2]
    # the same values as the Python API computes
    m = diffc.load(train)
    p = m.init()
    for _ in range(3):
        p = m.step(p)
    assert np.array_equal(p["w"], p3["w"]) and p["b"] == p3["b"]


def test_a_file_written_by_python_is_an_argument(train, capsys):
    diffc.save(train.parent / "p.npz", {"w": np.array([2.0, 2.0]), "b": 1.0, "steps": 5})
    assert run(capsys, "run", train, "--arg", "p=p.npz") == (OK, "(0.0, 5)\n", "")
    assert run(capsys, "check", train, "--arg", "p=p.npz")[0] == OK


@pytest.mark.parametrize(
    "out, message",
    [("p.npy", "must end in .npz"), ("nowhere/p.npz", "there is no folder nowhere")],
)
def test_bad_out_paths_are_refused_before_the_run(train, capsys, out, message):
    code, stdout, err = run(capsys, "run", train, "--entry", "init", "--out", out)
    assert code == USAGE and stdout == "" and message in err


@pytest.mark.parametrize(
    "data, message",
    [
        (None, "no such file"),
        (b"", "File is not a zip file"),
        (b"PK\x03\x04 damaged", "cannot read the parameter file"),
    ],
)
def test_bad_npz_arguments_exit_2(train, capsys, data, message):
    if data is not None:
        (train.parent / "p.npz").write_bytes(data)
    code, _, err = run(capsys, "run", train, "--arg", "p=p.npz")
    assert code == USAGE and err.startswith("diffc: error: --arg p: cannot read the parameter file p.npz")
    assert message in err


def test_a_truncated_npz_argument_exits_2(train, capsys):
    assert run(capsys, "run", train, "--entry", "init", "--out", "p.npz")[0] == OK
    data = (train.parent / "p.npz").read_bytes()
    (train.parent / "p.npz").write_bytes(data[: len(data) - 40])
    code, _, err = run(capsys, "run", train, "--arg", "p=p.npz")
    assert code == USAGE and "cannot read the parameter file p.npz" in err


def test_a_value_with_names_npz_cannot_hold_is_not_written(train, capsys):
    """Every DFL record field is a name, so any value can be written; the checks of save stay
    with the Python API (tests/runtime/test_save_load.py)."""
    (train.parent / "t.dfl").write_text("fn main() = ((), {a: [[true]], b: (1, 2.5)})\n")
    assert run(capsys, "run", train.parent / "t.dfl", "--out", "t.npz") == (OK, "", "")
    assert run(capsys, "run", train, "--entry", "init", "--out", "t.npz")[0] == OK  # (replaced)
    back = diffc.load_tree(train.parent / "t.npz")
    assert sorted(back) == ["b", "steps", "w"]


def test_out_and_json_exclude_each_other(train, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", str(train), "--entry", "init", "--out", "p.npz", "--json"])
    assert e.value.code == USAGE and "not allowed with argument" in capsys.readouterr().err

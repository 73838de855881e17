"""Did you mean, on the command line and for imports: a misspelt --entry, --arg name or module
name suggests the closest one (errors.closest)."""

from __future__ import annotations

from diffc import cli


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, err


def test_entry_and_parameter(capsys, tmp_path):
    p = tmp_path / "p.dfl"
    p.write_text("fn main(xs, scale) = xs * scale\nfn loss(w) = w\n")
    code, err = run(capsys, "run", p, "--entry", "los", "--arg", "w=1.0")
    assert code == cli.EXIT_USAGE and err.strip().endswith("did you mean `loss`?")
    code, err = run(capsys, "run", p, "--arg", "xs=1.0", "--arg", "scal=2.0")
    assert code == cli.EXIT_USAGE and err.strip().endswith("(it takes xs, scale); did you mean `scale`?")
    code, err = run(capsys, "run", p, "--arg", "xs=1.0", "--arg", "zzz=2.0")
    assert code == cli.EXIT_USAGE and "did you mean" not in err


def test_module_name(capsys, tmp_path):
    (tmp_path / "helpers.dfl").write_text("fn f(x) = x\n")
    p = tmp_path / "p.dfl"
    p.write_text("import helper\nimport nn\nfn main() = helper.f(1.0)\n")
    code, err = run(capsys, "run", p)
    assert code == cli.EXIT_PROGRAM and "no module named `helper`" in err and "did you mean `helpers`?" in err
    p.write_text("import nnn\nfn main() = 1.0\n")  # the standard library's modules too
    code, err = run(capsys, "run", p)
    assert code == cli.EXIT_PROGRAM and "did you mean `nn`?" in err

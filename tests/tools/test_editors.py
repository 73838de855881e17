"""The TextMate grammar in editors/ keeps up with the language: every keyword of the parser's
grammar and every built-in function is highlighted, and the VS Code extension uses the grammar."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diffc.specialise.builtins import BUILTINS
from diffc.syntax.parse import grammar_path

EDITORS = Path(__file__).resolve().parents[2] / "editors"
GRAMMAR = json.loads((EDITORS / "dfl.tmLanguage.json").read_text(encoding="utf-8"))


def patterns(node=GRAMMAR):
    """Every pattern with a `match` regex, with its scope name (of the pattern or its captures)."""
    for p in node.get("patterns", []):
        yield from _with(p)
    for p in node.get("repository", {}).values():
        yield from _with(p)


def _with(p):
    if "match" in p:
        names = [p.get("name", "")] + [c.get("name", "") for c in p.get("captures", {}).values()]
        yield " ".join(names), re.compile(p["match"])
    yield from patterns(p)


def keywords() -> set[str]:
    """The words quoted in grammar/dfl.lark: `fn`, `let`, `and`..."""
    return set(re.findall(r'"([a-z]+)"', grammar_path().read_text(encoding="utf-8")))


def highlighted(word: str) -> list[str]:
    """The scopes of the patterns that match exactly `word` standing alone."""
    return [
        scope
        for scope, regex in patterns()
        if "comment" not in scope and "string" not in scope and (m := regex.search(word)) and m.group(0) == word
    ]


def test_every_regex_compiles_and_names_a_scope():
    found = list(patterns())
    assert len(found) >= 9 and all(scope.strip().endswith(".dfl") for scope, _ in found)


@pytest.mark.parametrize("word", sorted(keywords()))
def test_every_keyword_is_highlighted(word):
    assert highlighted(word), f"keyword `{word}` of grammar/dfl.lark is not in editors/dfl.tmLanguage.json"
    assert not highlighted(word + "x"), f"`{word}x` is a name, not the keyword `{word}`"


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_is_highlighted(name):
    assert highlighted(name), f"built-in `{name}` is not in editors/dfl.tmLanguage.json"
    assert not highlighted("my_" + name)


def test_the_rest_of_the_language():
    scopes = dict(patterns())
    assert highlighted("3.5e-2") == ["constant.numeric.dfl"] and highlighted("42") == ["constant.numeric.dfl"]
    for op in ["**", "//", "=>", "->", "..", "@", "=="]:
        assert highlighted(op) == ["keyword.operator.dfl"], op
    [fn_def] = [r for s, r in scopes.items() if "entity.name.function" in s]
    assert fn_def.search("fn loss(w) = 1").group(2) == "loss"
    assert fn_def.search("fn (x) => x") is None  # a lambda names nothing


def test_the_vscode_extension_uses_the_grammar():
    ext = EDITORS / "vscode"
    pkg = json.loads((ext / "package.json").read_text(encoding="utf-8"))
    [lang] = pkg["contributes"]["languages"]
    [grammar] = pkg["contributes"]["grammars"]
    assert lang["extensions"] == [".dfl"] and grammar["scopeName"] == GRAMMAR["scopeName"]
    assert json.loads((ext / grammar["path"]).read_text(encoding="utf-8")) == GRAMMAR
    conf = json.loads((ext / lang["configuration"]).read_text(encoding="utf-8"))
    assert conf["comments"] == {"lineComment": "#"} and ["(", ")"] in conf["brackets"]

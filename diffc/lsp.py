"""`diffc lsp`: a language server over standard input and output (pygls).

On opening, changing or saving a .dfl file it loads the text (imports from the file's folder,
then the standard library) and publishes diffc's located diagnostics, none once the file is
right. Each function whose parameters all declare a dtype and a shape with numbers (`x: f64[3]`,
`n: i64[]`), or that has none, is specialised too, so type and shape errors inside it are
reported, and hovering over its name shows its specialised type besides its header."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, api, bigstack, resolve
from .errors import DiffcError, UsageError
from .gradcheck import draw_args
from .pipeline import to_ir
from .pytree import unflatten
from .repl import signature_text, type_text, types_of
from .source import Span
from .specialise.builtins import BUILTINS

try:
    from lsprotocol import types as lsp
    from pygls.lsp.server import LanguageServer
    from pygls.uris import to_fs_path
except ImportError:  # (an optional extra: `serve` says how to install it)
    LanguageServer = None


@dataclass
class Analysis:
    """What one text of a file gives: its module (None if it does not load), its errors, and
    the specialised type of each function that could be specialised from its declarations."""

    module: resolve.Module | None
    errors: list[DiffcError] = field(default_factory=list)
    types: dict[str, str] = field(default_factory=dict)


def analyse(text: str, path: str) -> Analysis:
    try:
        module = bigstack.run(resolve.load_text, text, path, Path(path).parent, BUILTINS)
    except DiffcError as e:
        return Analysis(None, [e])
    except Exception as e:  # a bug in diffc: said on stderr (the editor's log), and no diagnostics
        _internal_error(e)
        return Analysis(None)
    found = Analysis(module)
    for name, fndef in module.fns.items():
        if any(
            p.ann is None or p.ann.dims is None or any(isinstance(d, str) for d in p.ann.dims) for p in fndef.params
        ):
            continue  # (a type the declarations leave open)
        try:
            args = draw_args(api.Module(module), name, {}, np.random.default_rng(0))
            prog, out_tree = bigstack.run(to_ir, module, name, types_of(args), "specialise")
        except UsageError:
            continue
        except DiffcError as e:
            found.errors.append(e)
            continue
        except Exception as e:
            _internal_error(e)
            continue
        ins = ", ".join(type_text(t) for t in types_of(args))
        out = type_text(unflatten(out_tree, prog.main.body.out_types, make_record=dict))
        found.types[name] = f"({ins}) -> {out}"
    return found


def _internal_error(e: Exception) -> None:
    print(f"diffc lsp: internal error in diffc: {type(e).__name__}: {e}", file=sys.stderr)


def located(e: DiffcError, path: str) -> tuple[Span | None, str]:
    """The place in file `path` to show e at (its own span, or the call or import in this file
    that led to it), and the message to show there."""
    message = "\n".join([e.message, *(f"note: {n}" for n in e.notes)])
    if e.span is not None and e.span.file is not None and e.span.file.name == path:
        return e.span, message
    for _, site in e.call_sites:
        if site.file is not None and site.file.name == path:
            return site, f"{message} (at {e.location})" if e.location else message
    return None, message


def diagnostic(e: DiffcError, path: str):
    span, message = located(e, path)
    if span is None:
        start = end = lsp.Position(0, 0)
    else:
        start = lsp.Position(span.line - 1, span.col - 1)
        if span.end_line and (span.end_line, span.end_col) > (span.line, span.col):
            end = lsp.Position(span.end_line - 1, span.end_col - 1)
        else:
            end = lsp.Position(span.line - 1, span.col)
    return lsp.Diagnostic(lsp.Range(start, end), message, severity=lsp.DiagnosticSeverity.Error, source="diffc")


def hover_text(analysis: Analysis, word: str) -> str | None:
    """Markdown for a function's name: its header, and its specialised type when known."""
    module = analysis.module
    if module is None or word not in module.fns:
        return None
    text = f"```dfl\n{signature_text(module.fns[word])}\n```"
    if word in analysis.types:
        text += f"\n\nspecialised: `{word}{analysis.types[word]}`"
    return text


def word_at(line: str, col: int) -> str:
    for m in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", line):
        if m.start() <= col <= m.end():
            return m.group()
    return ""


def make_server():
    server = LanguageServer("diffc", __version__)
    analyses: dict[str, Analysis] = {}

    def check(ls, uri: str) -> None:
        doc = ls.workspace.get_text_document(uri)
        path = to_fs_path(uri) or uri
        found = analyse(doc.source, path)
        if found.module is None and uri in analyses:  # (hover keeps the last module that loaded)
            found.module, found.types = analyses[uri].module, analyses[uri].types
        analyses[uri] = found
        diagnostics = [diagnostic(e, path) for e in found.errors]
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: lsp.DidOpenTextDocumentParams):
        check(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: lsp.DidChangeTextDocumentParams):
        check(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls, params: lsp.DidSaveTextDocumentParams):
        check(ls, params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def hover(ls, params: lsp.HoverParams):
        found = analyses.get(params.text_document.uri)
        lines = ls.workspace.get_text_document(params.text_document.uri).lines
        if found is None or params.position.line >= len(lines):
            return None
        text = hover_text(found, word_at(lines[params.position.line], params.position.character))
        if text is None:
            return None
        return lsp.Hover(contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text))

    return server


def serve() -> int:
    if LanguageServer is None:
        print("diffc: error: `diffc lsp` needs pygls: pip install 'diffc[lsp]'", file=sys.stderr)
        return 2
    # pygls closes its output and raises SystemExit at the `exit` notification: it gets a
    # copy of standard output, so that the command line can still flush and return the status
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    try:
        make_server().start_io(sys.stdin.buffer, out)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    return 0

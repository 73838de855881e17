"""The DiffcError tree and the one renderer of error messages.

Every mistake a user can make ends in one of these, carrying the Span of the culprit; the
CLI prints `render()` and exits 1, the Python API raises it. Anything else escaping diffc
is a bug in diffc (an InternalError)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from .source import Span


class DiffcError(Exception):
    """Base class: a message and, when known, the source span it is about."""

    kind = "error"

    def __init__(
        self,
        message: str,
        span: Span | None = None,
        notes: tuple[str, ...] = (),
        *,
        misspelt: tuple[str, Iterable[str]] | None = None,
    ):
        """`misspelt=(name, candidates)` ends the message with the candidate most like name,
        `; did you mean `x`?`, when one is close."""
        if misspelt is not None:
            message += did_you_mean(*misspelt)
        super().__init__(message)
        self.message = message
        self.span = span
        self.notes = tuple(notes)
        # (how, span): the call sites (or imports) in other files that led to the error,
        # innermost first; the last is the user's own (See Note [Call sites])
        self.call_sites: list[tuple[str, Span]] = []

    def called_from(self, site: Span | None, how: str = "called") -> None:
        """Record `site`, a call (or an import) the error passed through, when it is in
        another file than the place recorded last: an error in an imported module then also
        shows the user's line that led there."""
        last = self.call_sites[-1][1] if self.call_sites else self.span
        if site is None or site.file is None or last is None or last.file is None:
            return
        if site.file is not last.file and site.file.name != last.file.name:
            self.call_sites.append((how, site))

    @property
    def location(self) -> str | None:
        """`file:line:col`, or None when the error has no place in a program."""
        s = self.span
        if s is None or s.file is None:
            return None
        return f"{s.file.name}:{s.line}:{s.col}"

    def render(self) -> str:
        """`file:line:col: error: message`, the source line, and a caret under the culprit;
        then each call site in another file that led there, with its line."""
        s = self.span
        if s is None or s.file is None:
            out = [f"error: {self.message}"]
        else:
            out = [f"{self.location}: error: {self.message}", *_excerpt(s)]
        for how, site in self.call_sites:
            out.append(f"  {how} from {site.file.name}:{site.line}:{site.col}")
            out.extend(_excerpt(site))
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


def _excerpt(s: Span) -> list[str]:
    """The line of a span, and a caret under its columns ([] past the end of the file)."""
    text = s.file.line(s.line)
    if not text:
        return []
    width = s.end_col - s.col if s.end_line == s.line and s.end_col > s.col else 1
    return [f"    {text}", "    " + " " * (s.col - 1) + "^" + "~" * (width - 1)]


class DiffcSyntaxError(DiffcError):
    """The text does not parse."""


class NameError_(DiffcError):
    """An unknown variable, function, field or module."""


class TypeError_(DiffcError):
    """A value of the wrong kind or dtype (a call of a number, a float condition...)."""


class ShapeError(DiffcError):
    """Shapes that do not agree (broadcasting, `@`, reshape, annotations)."""


class BoundsError(DiffcError):
    """An index outside its axis, at compile time or while the native code runs."""


class RecursionDepthError(DiffcError):
    """Recursion deeper than the depth guard allows."""


class DiffcMemoryError(DiffcError):
    """An array or tape that cannot be allocated: too large to ever exist (found while
    compiling), or more than the memory left (while running)."""


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `name` (a likely misspelling of it), or None if none is close.
    Names starting with `_` are diffc's own and never suggested."""
    words = sorted({c for c in candidates if c != name and not c.startswith("_")})
    # difflib ranks; a few edits at most (one per three letters) keep short names honest: `inf`
    # is not a misspelt `sin`, `totl` is `total`
    found = [
        w for w in difflib.get_close_matches(name, words, n=3, cutoff=0.6) if _edits(name, w) <= max(1, len(name) // 3)
    ]
    return found[0] if found else None


def _edits(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours that make a into b."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`; did you mean `x`?` for the closest candidate, or '' (to end a message with)."""
    best = closest(name, candidates)
    return f"; did you mean `{best}`?" if best else ""


def bytes_text(n: int) -> str:
    """A byte count as people read it: `32.0 GB` (powers of 1000)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB"):
        if n < 1000 or unit == "EB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


class UsageError(DiffcError):
    """A wrong command-line argument or Python call (not a mistake in the program)."""


class InternalError(DiffcError):
    """A bug in diffc itself, reported with the place of the program it was compiling."""


# Friendlier public names; the trailing underscores above avoid shadowing Python's builtins.
DiffcNameError = NameError_
DiffcTypeError = TypeError_


# Note [Call sites]
# ~~~~~~~~~~~~~~~~~
# An error inside an imported module is located where it is, in the module's file: that is
# the line to fix if the module is wrong. But the usual cause is the user's call with the
# wrong arguments, so the error also collects, as it unwinds, each call (in the tracer,
# specialise/trace.py) or import (resolve.py) that crosses from one file into another. A call
# within the same file adds nothing, so the chain stays short: `nn.dfl:5:3` then
# `called from prog.dfl:12:5`. Errors found while native code runs have no such chain: the
# calls are inlined by then.

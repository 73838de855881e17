"""Source files and spans: every AST node and IR equation carries a Span so that any error,
found at compile time or while native code runs, can point at the user's line and column."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class SourceFile:
    """A program text and the name it is reported under (a path, or `<string>`)."""

    name: str
    text: str
    _lines: list[str] = field(default=None, repr=False, compare=False)

    def line(self, lineno: int) -> str:
        """The text of 1-based line `lineno`, without its newline ('' past the end)."""
        if self._lines is None:
            object.__setattr__(self, "_lines", self.text.splitlines())
        if 1 <= lineno <= len(self._lines):
            return self._lines[lineno - 1]
        return ""


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column of its start and end."""

    file: SourceFile | None
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    def __repr__(self) -> str:
        name = self.file.name if self.file else "?"
        return f"{name}:{self.line}:{self.col}"

    @property
    def filename(self) -> str:
        return self.file.name if self.file else "<unknown>"


NO_SPAN = Span(None, 0, 0)

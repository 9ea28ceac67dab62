"""Terminal output of the commands: progress and tables, in one place.

On a terminal, progress is a bar and tables are drawn by rich when it is installed (the
``report`` and ``dev`` extras bring it; the proxy's own install does not). Anywhere else (a
pipe, a CI log, a file) or without rich, progress is one line per tenth of the work and
tables are plain aligned columns, so logs stay readable and output stays the same from run
to run.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

# (done, total): what every long-running step reports.
Progress = Callable[[int, int], None]


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _fancy(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and _rich_available()


@contextlib.contextmanager
def progress(
    label: str, total: int, stream: TextIO | None = None, *, percent: bool = False
) -> Iterator[Progress]:
    """A progress display for ``total`` units of work, as a callback ``(done, total)``.

    ``label`` is the verb of the plain lines ("replayed 30/100"); ``percent`` shows a share
    instead of counts (for work measured in bytes). Written to stderr unless told otherwise.
    """
    out = stream if stream is not None else sys.stderr
    if _fancy(out):
        from rich.console import Console
        from rich.progress import Progress as Bar

        with Bar(console=Console(file=out), transient=True) as bar, _logs_above_the_bar(out):
            task = bar.add_task(label, total=max(total, 1))

            def advance(done: int, of: int) -> None:
                bar.update(task, completed=done, total=max(of, 1))

            yield advance
        return
    yield _plain_lines(label, out, percent)


@contextlib.contextmanager
def _logs_above_the_bar(out: TextIO) -> Iterator[None]:
    """Log records bound for ``out`` go through rich's stand-in for stderr while a bar is
    live (printed above it); a handler holding the real stream would write through the bar."""
    proxy = sys.stderr  # rich's, when the bar is on stderr
    moved = [
        h
        for h in logging.getLogger().handlers
        if type(h) is logging.StreamHandler and h.stream is out and proxy is not out
    ]
    for handler in moved:
        handler.setStream(proxy)
    try:
        yield
    finally:
        for handler in moved:
            handler.setStream(out)


def _plain_lines(label: str, out: TextIO, percent: bool) -> Progress:
    shown = -1  # the last tenth printed

    def report(done: int, of: int) -> None:
        nonlocal shown
        tenth = 10 if of <= 0 else min(10, 10 * done // of)
        if tenth <= shown:
            return
        shown = tenth
        if percent:
            print(f"{label} {10 * tenth}%", file=out, flush=True)
        else:
            print(f"{label} {done}/{of}", file=out, flush=True)

    return report


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    right: bool = False  # numbers are right-aligned


@dataclass(frozen=True, slots=True)
class Styled:
    """Text with a rich style ("bold red"): coloured on a terminal, plain text elsewhere."""

    text: str
    style: str = ""

    def __str__(self) -> str:
        return self.text


def _rich_text(value: Any) -> Any:
    from rich.text import Text

    if isinstance(value, Styled):
        return Text(value.text, style=value.style)
    return Text(str(value))


def say(*parts: str | Styled, stream: TextIO | None = None) -> None:
    """One line on ``stream`` (stdout) from plain and styled parts."""
    out = stream if stream is not None else sys.stdout
    if _fancy(out):
        from rich.console import Console
        from rich.text import Text

        Console(file=out, highlight=False).print(Text.assemble(*map(_rich_text, parts)))
        return
    print("".join(map(str, parts)), file=out)


def table_lines(columns: Sequence[Column | str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Plain aligned columns: a header, a rule, the rows (cells shown with ``str``)."""
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    cells = [[str(v) for v in row] for row in rows]
    for row in cells:
        if len(row) != len(cols):
            raise ValueError(f"a row of {len(row)} cells for {len(cols)} columns")
    widths = [max([len(c.title), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if c.right else v.ljust(w)
            for v, w, c in zip(values, widths, cols, strict=True)
        ).rstrip()

    return [line([c.title for c in cols]), line(["-" * w for w in widths])] + [
        line(r) for r in cells
    ]


def print_table(
    columns: Sequence[Column | str],
    rows: Sequence[Sequence[Any]],
    stream: TextIO | None = None,
    *,
    title: str | None = None,
    caption: str | None = None,
    indent: int = 0,
) -> None:
    """A table on ``stream`` (stdout): rich's on a terminal, plain columns elsewhere. Cells
    may be :class:`Styled`."""
    out = stream if stream is not None else sys.stdout
    if _fancy(out):
        from rich import box
        from rich.console import Console
        from rich.table import Table

        cols = [c if isinstance(c, Column) else Column(c) for c in columns]
        table = Table(
            title=title,
            caption=caption,
            box=box.SIMPLE_HEAD,
            title_justify="left",
            caption_justify="left",
        )
        for c in cols:
            table.add_column(c.title, justify="right" if c.right else "left")
        for row in rows:
            table.add_row(*map(_rich_text, row))
        Console(file=out).print(table)
        return
    pad = " " * indent
    if title:
        print(pad + title, file=out)
    for text in table_lines(columns, rows):
        print(pad + text, file=out)
    if caption:
        print(pad + caption, file=out)


@dataclass(slots=True)
class Table:
    """A table built before it is shown (the report's, which returns them to callers)."""

    title: str
    columns: list[Column]
    rows: list[list[str | Styled]] = field(default_factory=list)
    caption: str | None = None

    def add_row(self, *cells: str | Styled) -> None:
        self.rows.append(list(cells))

    def show(self, stream: TextIO | None = None) -> None:
        print_table(self.columns, self.rows, stream, title=self.title, caption=self.caption)

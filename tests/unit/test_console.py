"""The console module: bars and rich tables on a terminal, plain lines anywhere else, and a
plain fallback that works without rich (the proxy's own install does not bring it)."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

from shadoweval import console
from shadoweval.console import Column, print_table, progress, table_lines


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import rich` raise ImportError, as when absent.
    for name in [m for m in sys.modules if m == "rich" or m.startswith("rich.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "rich", None)


def test_plain_progress_is_a_line_at_the_start_then_one_per_tenth() -> None:
    out = io.StringIO()
    with progress("replayed", 100, out) as shown:
        for done in range(1, 101):
            shown(done, 100)
    lines = out.getvalue().splitlines()
    assert lines == ["replayed 1/100", *(f"replayed {n}/100" for n in range(10, 101, 10))]


def test_plain_progress_in_percent_and_for_empty_work() -> None:
    out = io.StringIO()
    with progress("read", 0, out, percent=True) as shown:
        for done in (0, 512, 2048, 4096, 4096):
            shown(done, 4096)
    assert out.getvalue().splitlines() == ["read 0%", "read 10%", "read 50%", "read 100%"]
    empty = io.StringIO()
    with progress("scored", 0, empty) as shown:
        shown(0, 0)
    assert empty.getvalue().splitlines() == ["scored 0/0"]  # said once, not divided by zero


def test_a_terminal_without_rich_gets_the_plain_lines(no_rich: None) -> None:
    assert not console._rich_available()
    tty = Terminal()
    with progress("probed", 4, tty) as shown:
        for done in range(1, 5):
            shown(done, 4)
    assert tty.getvalue().splitlines()[-1] == "probed 4/4"
    table = Terminal()
    print_table(["name", Column("n", right=True)], [("a", 1), ("bb", 22)], table, title="t")
    assert table.getvalue().splitlines() == ["t", "name   n", "----  --", "a      1", "bb    22"]


def test_a_terminal_with_rich_gets_a_bar_and_a_drawn_table() -> None:
    pytest.importorskip("rich")
    tty = Terminal()
    with progress("replayed", 3, tty) as shown:
        for done in range(1, 4):
            shown(done, 3)
    assert "replayed 1/3" not in tty.getvalue()  # a bar, not the plain lines
    table = Terminal()
    print_table(["name", Column("n", right=True)], [("alpha", 7)], table)
    text = table.getvalue()
    assert "alpha" in text and "7" in text and "----  " not in text


def test_tables_align_columns_and_refuse_ragged_rows() -> None:
    lines = table_lines([Column("upstream"), Column("p50 ms", right=True)], [("cand-a", 1.5)])
    assert lines == ["upstream  p50 ms", "--------  ------", "cand-a       1.5"]
    with pytest.raises(ValueError, match="a row of 1 cells for 2 columns"):
        table_lines(["a", "b"], [("x",)])


def test_a_pipe_gets_plain_tables_even_with_rich() -> None:
    out = io.StringIO()
    print_table(["k", "v"], [("x", "y")], out, indent=2)
    assert out.getvalue().splitlines() == ["  k  v", "  -  -", "  x  y"]


def test_log_records_during_a_bar_are_printed_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("rich")
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    handler = logging.StreamHandler(tty)
    logging.getLogger().addHandler(handler)
    try:
        with progress("scored", 2) as shown:
            assert handler.stream is not tty  # rich's stand-in for stderr, not through the bar
            logging.getLogger("shadoweval.test").warning("a record mid-run")
            shown(2, 2)
        assert handler.stream is tty
    finally:
        logging.getLogger().removeHandler(handler)
    assert "a record mid-run" in tty.getvalue()


def test_styled_cells_and_lines_are_plain_text_in_a_pipe() -> None:
    out = io.StringIO()
    console.say(console.Styled("gate: ", "bold"), console.Styled("PASS", "bold green"), stream=out)
    table = console.Table("t", [Column("name"), Column("ok", right=True)], caption="why")
    table.add_row("a", console.Styled("yes", "bold red"))
    table.show(out)
    assert out.getvalue().splitlines() == [
        "gate: PASS",
        "t",
        "name   ok",
        "----  ---",
        "a     yes",
        "why",
    ]


def test_the_report_renders_without_rich(no_rich: None, tmp_path: Path) -> None:
    import orjson

    from shadoweval.config.proxy import Pricing
    from shadoweval.config.report import Report
    from shadoweval.pricing import PriceTable
    from shadoweval.report.aggregate import build_report
    from shadoweval.report.load import load
    from shadoweval.report.terminal import render
    from shadoweval.testing.synthetic import Upstream, generate

    pairs, _ = generate(Upstream("prod", role="primary"), [Upstream("a")], 40)
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in pairs))
    report = build_report(load([path]), Report(), PriceTable(Pricing()))
    out = Terminal()  # a terminal, but no rich: plain columns all the same
    render(report, out)
    lines = out.getvalue().splitlines()
    assert lines[1] == "Candidates against the primary" and lines[2].startswith("upstream  role")
    assert lines[-1] == "gate: NOT ENOUGH DATA"

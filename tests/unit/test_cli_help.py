"""`--help` is complete: every option of every command says what it does and shows its
default, and the commands started by `serve` itself stay out of the list."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from shadoweval.cli import HIDDEN_COMMANDS, build_parser


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


ALL = list(commands(build_parser()))


def test_hidden_commands_are_not_listed() -> None:
    text = build_parser().format_help()
    assert "==SUPPRESS==" not in text
    for name in HIDDEN_COMMANDS:
        assert name not in text
    # ... and they still run (serve starts them by name).
    assert build_parser().parse_args(["relay", "--fd", "3"]).command == "relay"


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) or "shadoweval" for p, _ in ALL])
def test_every_option_has_help_and_its_default(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    text = parser.format_help()
    assert "==SUPPRESS==" not in text
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and not a.help
    ]
    assert not missing, f"shadoweval {' '.join(path)}: options without help: {missing}"
    formatter = parser._get_formatter()
    no_default = [
        "/".join(a.option_strings)
        for a in parser._actions
        if a.option_strings
        and a.default is not None
        and not isinstance(a.default, bool)
        and a.default is not argparse.SUPPRESS
        and a.help is not argparse.SUPPRESS
        and "default" not in (formatter._get_help_string(a) or "")
    ]
    assert not no_default, (
        f"shadoweval {' '.join(path)}: options whose help does not show the default: {no_default}"
    )


@pytest.mark.parametrize(("path", "parser"), ALL, ids=[" ".join(p) or "shadoweval" for p, _ in ALL])
def test_every_listed_command_says_what_it_does(
    path: tuple[str, ...], parser: argparse.ArgumentParser
) -> None:
    # argparse lists a sub-command only when it was added with help=...
    silent = [
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
        if name not in HIDDEN_COMMANDS
        and not any(c.dest == name and c.help for c in action._choices_actions)
    ]
    assert not silent, f"shadoweval {' '.join(path)}: commands without help: {silent}"

"""Every option and positional of every `live3dpe` subcommand explains itself in `--help`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from live3dpe.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """(command path, parser) for `parser` and every subcommand below it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, [*path, name])


def test_every_cli_argument_has_help():
    missing = [
        " ".join([*path, str("/".join(action.option_strings) or action.metavar or action.dest)])
        for path, parser in _parsers(build_parser(), ["live3dpe"])
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and action.dest != "help" and not (action.help or "").strip()
    ]
    assert missing == [], f"{len(missing)} arguments without --help text:\n" + "\n".join(missing)


def test_every_help_renders():
    """Each help string goes through argparse's %-formatting (e.g. %(default)s) without error."""
    for _, parser in _parsers(build_parser(), ["live3dpe"]):
        assert parser.format_help()

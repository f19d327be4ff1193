"""Every option and positional of every `live3dpe` subcommand explains itself in `--help`."""

from __future__ import annotations

import argparse

from live3dpe.cli import build_parser


def _missing_help(parser: argparse.ArgumentParser, path: list[str]) -> list[str]:
    """'<command path> <option or positional>' for each argument without a help text, depth first."""
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _missing_help(sub, [*path, name])
        elif action.dest != "help" and not (action.help or "").strip():
            name = "/".join(action.option_strings) or action.metavar or action.dest
            missing.append(" ".join([*path, str(name)]))
    return missing


def test_every_cli_argument_has_help():
    missing = _missing_help(build_parser(), ["live3dpe"])
    assert missing == [], f"{len(missing)} arguments without --help text:\n" + "\n".join(missing)


def test_every_help_renders():
    """Each help string goes through argparse's %-formatting (e.g. %(default)s) without error."""

    def walk(parser: argparse.ArgumentParser) -> None:
        assert parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())

"""The `live3dpe` command. Each part of the package contributes its own subcommands.

A subcommand module exposes `register(subparsers)`, adding parsers whose `func(args)`
runs the command. This keeps argument parsing next to the code it drives.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading

from live3dpe.logs import configure_logging, native_noise_filtered

COMMAND_MODULES = (
    "live3dpe.model.commands",
    "live3dpe.pipeline.commands",
    "live3dpe.stream.commands",
    "live3dpe.synth.commands",
    "live3dpe.train.commands",
    "live3dpe.webapp.commands",
    "live3dpe.evaluation.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="live3dpe",
        description="Real-time 3D-aware portrait editing (3DPE): edit a face in 3D from a text or image prompt.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, including the libraries' own (mediapipe, TFLite, WebRTC)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # a real missing dependency inside the module
                raise
            continue
        module.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl+C so that a command ends the same clean way (no partial output)."""


def _terminate(signum: int, frame) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Route SIGTERM into the Ctrl+C path for the duration of a command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 done as asked, 1 a clear error (no traceback), 2 usage,
    130 Ctrl+C, 143 SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_as_interrupt(), native_noise_filtered(not args.verbose):
            return int(args.func(args) or 0)
    except Terminated:
        print(f"live3dpe {args.command}: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        return 130
    except (ValueError, RuntimeError, OSError) as err:  # OSError: missing files, full disk, permissions
        logging.getLogger("live3dpe").debug("failed", exc_info=True)
        print(f"live3dpe {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

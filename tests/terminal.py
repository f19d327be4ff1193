"""Subprocesses that behave as if started from a terminal, whoever runs the tests."""

from __future__ import annotations

import signal


def sigint_as_from_a_terminal() -> None:
    """`preexec_fn` that lets SIGINT reach the child: a shell without job control starts
    background jobs (`pytest ... &`) with SIGINT ignored, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

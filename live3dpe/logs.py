"""Logging for the `live3dpe` command: our own INFO messages, not the libraries' chatter.

By default, other packages log only warnings and up (aioice/aiortc, matplotlib, ... log
every step at INFO), Python warnings raised from mediapipe, protobuf, absl and the WebRTC
stack are hidden, and the native logs that mediapipe's C++ graph writes straight to file
descriptor 2 (TFLite `INFO: Created TensorFlow Lite XNNPACK delegate`, absl `W0000 ...`
lines) are filtered out of stderr. Those native logs ignore GLOG_minloglevel and
TF_CPP_MIN_LOG_LEVEL (mediapipe 0.10.21 logs through absl, TFLite through its minimal
logger), so the only way to hide them is to filter the file descriptor itself. `-v` turns
all of this off and shows everything at DEBUG.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import sys
import threading
import warnings
from collections.abc import Iterator

# packages whose Python warnings are not for our users (`warnings` module regex)
NOISY_WARNING_MODULES = r"(mediapipe|google\.protobuf|absl|aioice|aiortc|av)(\.|$)"

# lines that mediapipe's native code writes to fd 2 that mean nothing to a user: TFLite's
# INFO lines, absl's notice that it is not initialised, and absl/glog INFO and WARNING lines
# ("W0000 00:00:1796185005.465141   24073 file.cc:114] ..."). Errors (E/F lines) stay.
NATIVE_NOISE = re.compile(
    rb"(?m:^INFO: [^\n]*\n)"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\n"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] [^\n]*\n"
)
PARTIAL_LINE_WAIT_S = 0.05  # a line without its end (a progress bar) is passed on after this


def configure_logging(verbose: bool) -> None:
    """`live3dpe` INFO and everyone's warnings; with `verbose`, DEBUG from every package."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("live3dpe").setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:
        warnings.filterwarnings("ignore", module=NOISY_WARNING_MODULES)
        # Qt (OpenCV's preview window) warns at exit about timers of a GUI thread that has ended
        os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")
        # transformers draws a "Loading weights" bar for the text encoder's 103 tensors (read
        # when transformers is imported, which happens later, on the first text prompt)
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class _FdFilter:
    """Routes file descriptor 2 through a pipe; a thread passes on everything but the
    `drop` matches to the original stderr. Complete lines go on at once, a partial line
    (a progress bar redrawn with \\r) after PARTIAL_LINE_WAIT_S."""

    def __init__(self, drop: re.Pattern[bytes]) -> None:
        self.drop = drop
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self.target = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self.source = read_end
        self.thread = threading.Thread(target=self._pump, name="live3dpe-stderr", daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.target, data) :]
        except OSError:  # stderr went away: keep draining, or writers to fd 2 would block
            pass

    def _pump(self) -> None:
        pending = b""
        while True:
            if not select.select([self.source], [], [], PARTIAL_LINE_WAIT_S if pending else None)[0]:
                self._write(pending)
                pending = b""
                continue
            chunk = os.read(self.source, 1 << 16)
            if not chunk:
                break
            pending += chunk
            end = max(pending.rfind(b"\n"), pending.rfind(b"\r")) + 1
            self._write(self.drop.sub(b"", pending[:end]))
            pending = pending[end:]
        self._write(self.drop.sub(b"", pending))

    def close(self) -> None:
        """Put the original stderr back and pass on what is still in the pipe."""
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(self.target, 2)  # closes the pipe's last write end: the thread sees its end
        self.thread.join(timeout=2.0)
        if not self.thread.is_alive():
            os.close(self.source)
            os.close(self.target)


@contextlib.contextmanager
def native_noise_filtered(enabled: bool = True) -> Iterator[None]:
    """While inside, drop NATIVE_NOISE lines written to fd 2 by any thread or native library.

    Off on Windows (no select() on pipes) and where fd 2 is not open."""
    if not enabled or os.name == "nt":
        yield
        return
    try:
        fd_filter = _FdFilter(NATIVE_NOISE)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        fd_filter.close()

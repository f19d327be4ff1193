"""Frame sinks with a tiny aiortc-like interface: `send(frame)`, `close(abort=False)`.

The video file sink lives in `videofile.py`, the WebRTC one in `webrtc.py`.
"""
from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Callable

import cv2

from .control import Control
from .engine import StopStream
from .frame import Frame

log = logging.getLogger(__name__)


class NullSink:
    """Discards frames (benchmarks); counts them and keeps the last one for inspection."""

    def __init__(self) -> None:
        self.count = 0
        self.last: Frame | None = None
        self.closed = False

    def send(self, frame: Frame) -> None:
        self.count += 1
        self.last = frame

    def close(self, abort: bool = False) -> None:
        self.closed = True


class ProgressSink:
    """Wraps a sink with a tqdm progress bar (offline processing)."""

    def __init__(self, sink, total: int | None, desc: str = "frames") -> None:
        from tqdm import tqdm

        self.sink = sink
        self.bar = tqdm(total=total, desc=desc, unit="frame", disable=None)

    def send(self, frame: Frame) -> None:
        self.sink.send(frame)
        self.bar.update(1)

    def close(self, abort: bool = False) -> None:
        self.bar.close()
        self.sink.close(abort=abort)


class RunRejected(RuntimeError):
    """The finished stream is not what was asked; its output was discarded."""


class CheckedSink:
    """Wraps a sink whose output is committed only if `verdict()` (asked at close) finds no
    problem; otherwise the output is discarded and `RunRejected` carries the reason."""

    def __init__(self, sink, verdict: Callable[[], str | None]) -> None:
        self.sink, self.verdict = sink, verdict

    def send(self, frame: Frame) -> None:
        self.sink.send(frame)

    def close(self, abort: bool = False) -> None:
        problem = None if abort else self.verdict()
        self.sink.close(abort=abort or problem is not None)
        if problem is not None:
            raise RunRejected(f"{problem}; no output written")


def has_display() -> bool:
    """Whether a window can be opened: OpenCV's imshow aborts the process without a display."""
    if platform.system() in ("Darwin", "Windows"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


HOTKEYS = "q quit · m mirror · v viewpoint · s smoothing · p pass-through · o overlay"


class WindowSink:
    """A preview window with hotkeys that change the live `Control`; `q`/Esc ends the stream."""

    def __init__(self, control: Control, title: str = "live3dpe") -> None:
        if not has_display():
            raise RuntimeError("no display for a preview window (DISPLAY/WAYLAND_DISPLAY unset); use --output virtualcam or --output FILE.mp4")
        self.control, self.title = control, title
        self._opened = False

    def send(self, frame: Frame) -> None:
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            cv2.setWindowTitle(self.title, f"{self.title} — {HOTKEYS}")
            self._opened = True
        cv2.imshow(self.title, cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        self.handle_key(cv2.waitKey(1) & 0xFF)

    def handle_key(self, key: int) -> None:
        """Apply one key press (split out so it can be tested without a window)."""
        if key in (ord("q"), 27):
            raise StopStream
        toggles = {ord("m"): "mirror", ord("s"): "smoothing", ord("p"): "passthrough", ord("o"): "overlay"}
        if key in toggles:
            state = self.control.toggle(toggles[key])
            log.info("%s %s", toggles[key], "on" if getattr(state, toggles[key]) else "off")
        elif key == ord("v"):
            log.info("view %s", self.control.cycle_view().view)

    def close(self, abort: bool = False) -> None:
        if self._opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


def virtualcam_help() -> str:
    """What to do when no virtual camera backend is available, for this OS."""
    if sys.platform.startswith("linux"):
        return "load the v4l2loopback kernel module: `sudo modprobe v4l2loopback exclusive_caps=1` (package v4l2loopback-dkms)"
    return "install OBS Studio >= 30 and start its Virtual Camera once (Tools > Start Virtual Camera) so the device exists"


class VirtualCamSink:
    """Sends frames to a virtual camera (pyvirtualcam) that video-call apps can pick.

    The device opens at once when `size` (width, height) is given, else on the first frame."""

    def __init__(self, fps: float = 30.0, device: str | None = None, backend: str | None = None, size: tuple[int, int] | None = None) -> None:
        try:
            import pyvirtualcam  # noqa: F401
        except ImportError:
            raise RuntimeError("virtual camera output needs pyvirtualcam: pip install 'live3dpe[virtualcam]'") from None
        self.fps, self.device, self.backend = fps, device, backend
        self._cam = None
        if size is not None:
            self._open(*size)

    def _open(self, width: int, height: int) -> None:
        import pyvirtualcam

        try:
            self._cam = pyvirtualcam.Camera(width, height, self.fps, fmt=pyvirtualcam.PixelFormat.RGB, device=self.device, backend=self.backend)
        except RuntimeError as err:
            raise RuntimeError(f"no virtual camera available ({str(err).strip() or 'no backend'}). To fix: {virtualcam_help()}") from None
        log.info("virtual camera %s (%s) %dx%d @ %g fps", self._cam.device, self._cam.backend, width, height, self.fps)

    def send(self, frame: Frame) -> None:
        if self._cam is None:
            self._open(*frame.size)
        if frame.size != (self._cam.width, self._cam.height):
            raise ValueError(f"frame size changed to {frame.size[0]}x{frame.size[1]}; the virtual camera is {self._cam.width}x{self._cam.height}")
        self._cam.send(frame.image)

    def close(self, abort: bool = False) -> None:
        if self._cam is not None:
            self._cam.close()
            self._cam = None

"""Frame sinks with a tiny aiortc-like interface: `send(frame)`, `close(abort=False)`.

The video file sink lives in `videofile.py`, the WebRTC one in `webrtc.py`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from .control import HOTKEYS, Control
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


HELP_TEXT_FRACTION = 0.035  # help/message text height as a fraction of the frame height
MIN_TEXT_PX = 14  # ... and never below this many screen pixels, so it stays readable


def text_height_px(frame_height: int, display_scale: float = 1.0) -> float:
    """Text height in frame pixels: a fixed share of the frame, and at least MIN_TEXT_PX on
    screen when the window shows the frame shrunk by `display_scale`."""
    return max(HELP_TEXT_FRACTION * frame_height, MIN_TEXT_PX / max(display_scale, 1e-3))


def draw_text_panel(image: np.ndarray, rows: Sequence[tuple[str, ...]], text_px: float, bottom: bool = False) -> None:
    """Draw `rows` (cells in aligned columns) in white on a darkened box, top-left (or
    bottom-left), in place. The text is `text_px` tall unless it would not fit the image."""
    font, h, w = cv2.FONT_HERSHEY_SIMPLEX, image.shape[0], image.shape[1]
    unit_h = cv2.getTextSize("Ag", font, 1.0, 1)[0][1]
    gap = unit_h  # between columns
    columns = [max(cv2.getTextSize(row[c], font, 1.0, 1)[0][0] for row in rows if c < len(row)) for c in range(max(map(len, rows)))]
    unit_w = sum(columns) + gap * (len(columns) - 1)
    pitch_h = 1.7  # line pitch in text heights (room for descenders)
    scale = min(text_px / unit_h, 0.9 * w / unit_w, 0.9 * h / (unit_h * (pitch_h * len(rows) + 0.5)))
    text_h = unit_h * scale
    pad, pitch = round(0.6 * text_h), round(pitch_h * text_h)
    box_w, box_h = round(unit_w * scale) + 2 * pad, pitch * len(rows) + 2 * pad - round(0.5 * text_h)
    x0, y0 = pad, h - box_h - pad if bottom else pad
    roi = image[max(0, y0) : y0 + box_h, x0 : x0 + box_w]
    roi[:] = roi // 3  # darken, so white text reads on any frame
    thickness = max(1, round(scale * 1.8))
    for i, row in enumerate(rows):
        x, y = x0 + pad, y0 + pad + round(text_h) + i * pitch
        for cell, col_w in zip(row, columns):
            cv2.putText(image, cell, (x, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
            x += round((col_w + gap) * scale)


class WindowSink:
    """A preview window whose hotkeys (`HOTKEYS`) change the live `Control`.

    The window is created, drawn and destroyed by one UI thread of its own: OpenCV's HighGUI
    hangs when a window made in one thread is pumped or closed from another (the engine sends
    from its sink thread, the command closes from the main thread). `send` only leaves the
    frame in a latest-frame slot, so a slow screen never holds up the engine, and raises
    `StopStream` once the user pressed q / Esc or closed the window. `on_quit`, if given, is
    called from the UI thread at that moment (e.g. `engine.stop`), so the stream ends even
    while no frame arrives."""

    POLL_MS = 10  # how often the UI thread looks for keys and new frames
    MESSAGE_S = 2.5  # how long a hotkey's message stays on screen
    CLOSE_TIMEOUT_S = 2.0

    def __init__(self, control: Control, title: str = "live3dpe", on_quit: Callable[[], None] | None = None) -> None:
        if not has_display():
            raise RuntimeError("no display for a preview window (DISPLAY/WAYLAND_DISPLAY unset); use --output virtualcam or --output FILE.mp4")
        self.control, self.title, self.on_quit = control, title, on_quit
        self.show_help = False
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._message: tuple[str, float] | None = None  # (text, monotonic time it expires)
        self._quit = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def send(self, frame: Frame) -> None:
        if self._error is not None:
            raise RuntimeError(f"the preview window failed: {self._error}") from self._error
        if self._quit.is_set():
            raise StopStream
        with self._lock:
            self._latest = frame
        if self._thread is None:
            self.say("h: help, q: quit")
            self._thread = threading.Thread(target=self._ui_loop, name="live3dpe-window", daemon=True)
            self._thread.start()

    def say(self, text: str) -> None:
        """Show a short message at the bottom of the window for MESSAGE_S seconds."""
        self._message = (text, time.monotonic() + self.MESSAGE_S)

    def handle_key(self, key: int) -> None:
        """Apply one key press (`cv2.waitKey` code); raises `StopStream` for q / Esc.

        Split out of the UI thread so it can be tested without a window."""
        ch = chr(key).lower() if 0 < key < 128 else ""
        if key == 27 or ch == "q":
            raise StopStream
        toggles = {"m": "mirror", "s": "smoothing", "p": "passthrough", "o": "overlay"}
        if ch == "h":
            self.show_help = not self.show_help
            return
        if ch in toggles:
            name = toggles[ch]
            message = f"{name} {'on' if getattr(self.control.toggle(name), name) else 'off'}"
        elif ch == "v":
            message = f"view mode: {self.control.show_next_view().view}"
        elif ch == "n":
            try:
                message = f"prompt: {self.control.cycle_prompt().prompt_text}"
            except ValueError:
                message = "no prompt list to cycle: start with --prompts 'a,b,c'"
        else:
            return
        log.info("%s", message)
        self.say(message)

    def render(self, image: np.ndarray, display_scale: float = 1.0) -> np.ndarray:
        """The BGR image the window shows for an RGB frame: with the help panel and message."""
        out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        text_px = text_height_px(out.shape[0], display_scale)
        if self.show_help:
            draw_text_panel(out, HOTKEYS, text_px)
        message = self._message
        if message is not None and time.monotonic() < message[1]:
            draw_text_panel(out, [(message[0],)], text_px, bottom=True)
        return out

    def _request_quit(self) -> None:
        self._quit.set()
        if self.on_quit is not None:
            try:
                self.on_quit()
            except Exception:
                log.exception("on_quit failed")

    def _display_scale(self, width: int, height: int) -> float:
        """How much the window shrinks or grows the frame (1 where the backend cannot say)."""
        try:
            _, _, win_w, win_h = cv2.getWindowImageRect(self.title)
        except cv2.error:
            return 1.0
        return min(win_w / width, win_h / height) if win_w > 0 and win_h > 0 else 1.0

    def _ui_loop(self) -> None:
        drawn: tuple | None = None  # what is on screen: (frame, help shown, message)
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            cv2.setWindowTitle(self.title, f"{self.title} (h: help, q: quit)")
            while not self._closing.is_set():
                with self._lock:
                    frame = self._latest
                message = self._message if self._message is not None and time.monotonic() < self._message[1] else None
                if frame is not None and (drawn is None or drawn[0] is not frame or drawn[1:] != (self.show_help, message)):
                    cv2.imshow(self.title, self.render(frame.image, self._display_scale(*frame.size)))
                    drawn = (frame, self.show_help, message)
                key = cv2.waitKey(self.POLL_MS)
                if key != -1:
                    self.handle_key(key & 0xFF)
                if drawn is not None and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
                    log.info("preview window closed")
                    raise StopStream
        except StopStream:
            self._request_quit()
        except Exception as err:
            log.error("preview window failed: %s: %s", type(err).__name__, err)
            self._error = err
            self._request_quit()
        finally:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)

    def close(self, abort: bool = False) -> None:
        """Ask the UI thread to destroy the window, and wait for it (a bounded time)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(self.CLOSE_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("the preview window did not close within %g s", self.CLOSE_TIMEOUT_S)


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


def open_sink(
    target: str | os.PathLike,
    *,
    fps: float = 30.0,
    control: Control | None = None,
    size: tuple[int, int] | None = None,
    audio_from: str | os.PathLike | None = None,
):
    """`window`, `virtualcam`, `null` or a video file path -> a sink (the twin of `open_source`).

    control: what the window's hotkeys change; size: the output (width, height) when known, so a
    virtual camera opens (and fails) at once; audio_from: a file whose audio a video file keeps."""
    if target == "window":
        return WindowSink(control if control is not None else Control())
    if target == "virtualcam":
        return VirtualCamSink(fps=fps, size=size)
    if target == "null":
        return NullSink()
    from .videofile import VideoFileSink

    return VideoFileSink(target, fps=fps, audio_from=audio_from)

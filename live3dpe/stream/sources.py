"""Frame sources with a tiny aiortc-like interface: `recv() -> Frame` (EndOfStream at the end), `close()`."""
from __future__ import annotations

import logging
import os
import platform
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .frame import EndOfStream, Frame
from .synthetic import SyntheticFaceSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
_US = Fraction(1, 1_000_000)


def _capture_backend() -> int:
    """Native capture API per OS: probing with CAP_ANY may try GStreamer and hang."""
    system = platform.system()
    if system == "Linux":
        return cv2.CAP_V4L2
    if system == "Darwin":
        return cv2.CAP_AVFOUNDATION
    if system == "Windows":
        return cv2.CAP_DSHOW
    return cv2.CAP_ANY


class WebcamSource:
    """A local camera through OpenCV. MJPG is requested by default: most USB cameras only
    reach 30 FPS at 720p in MJPG. pts are microseconds since the first frame."""

    def __init__(self, index: int = 0, width: int | None = 1280, height: int | None = 720, fps: float | None = 30, mjpg: bool = True) -> None:
        self.index = index
        self._cap = cv2.VideoCapture(index, _capture_backend())
        if not self._cap.isOpened():
            self._cap.release()
            raise RuntimeError(f"cannot open camera {index}; list the available ones with `live3dpe live --list-cameras`")
        if mjpg:
            self._cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self.time_base = _US
        self._t0: int | None = None
        self._failures = 0

    def recv(self) -> Frame:
        ok, bgr = self._cap.read()
        now = time.monotonic_ns()
        if not ok or bgr is None:
            self._failures += 1
            if self._failures >= 10:
                raise EndOfStream  # unplugged
            raise RuntimeError(f"camera {self.index} returned no frame")
        self._failures = 0
        if self._t0 is None:
            self._t0 = now
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (now - self._t0) // 1000, _US, now)

    def close(self) -> None:
        self._cap.release()


def list_cameras(max_index: int = 10) -> list[dict]:
    """Cameras that open and deliver a frame: index, width, height, fps."""
    found = []
    for i in range(max_index):
        if platform.system() == "Linux" and not os.path.exists(f"/dev/video{i}"):
            continue
        cap = cv2.VideoCapture(i, _capture_backend())
        try:
            if cap.isOpened() and cap.read()[0]:
                found.append({
                    "index": i,
                    "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                    "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                    "fps": float(cap.get(cv2.CAP_PROP_FPS)),
                })
        finally:
            cap.release()
    return found


class VideoFileSource:
    """Decodes a video file with PyAV. pts and time_base are the file's, so an offline run
    keeps the exact timing. `realtime=True` paces frames to their timestamps (live demo).
    Undecodable packets are skipped with a warning."""

    def __init__(self, path: str | os.PathLike, realtime: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video file not found: {self.path}")
        try:
            self._container = av.open(str(self.path))
        except av.error.FFmpegError as err:
            raise ValueError(f"cannot read {self.path} as a video: {err}") from None
        if not self._container.streams.video:
            self._container.close()
            raise ValueError(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self.time_base: Fraction = self._stream.time_base or Fraction(1, 90000)
        rate = self._stream.average_rate or self._stream.base_rate or 30
        self.fps = float(rate)
        self.width, self.height = self._stream.codec_context.width, self._stream.codec_context.height
        self.has_audio = bool(self._container.streams.audio)
        self.realtime = realtime
        self._frames = self._decode()
        self._t0: float | None = None
        self._next_pts = 0

    @property
    def frame_count(self) -> int | None:
        """Frames in the file when the container says (else an estimate from the duration)."""
        if self._stream.frames:
            return int(self._stream.frames)
        if self._stream.duration and self._stream.time_base:
            return int(round(float(self._stream.duration * self._stream.time_base) * self.fps))
        return None

    def missing_frames(self, decoded: int) -> int:
        """How many frames short of what the file declares `decoded` frames are (0: none missing).

        Exact when the container counts its frames (MP4, MOV); an estimate from the duration
        (Matroska) is allowed two frames of rounding and variable frame rate."""
        declared = self.frame_count
        if declared is None:
            return 0
        slack = 0 if self._stream.frames else 2
        return declared - decoded if declared - decoded > slack else 0

    def _decode(self):
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.InvalidDataError as err:
                log.warning("skipping unreadable data in %s: %s", self.path, err)
                continue
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as err:
                log.warning("skipping a corrupt packet in %s: %s", self.path, err)
                continue
            yield from frames

    def recv(self) -> Frame:
        try:
            vf = next(self._frames)
        except StopIteration:
            raise EndOfStream from None
        pts = vf.pts if vf.pts is not None else self._next_pts
        self._next_pts = pts + max(1, round(1 / (self.fps * self.time_base)))
        if self.realtime:
            t = float(pts * self.time_base)
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now - t
            if (wait := self._t0 + t - now) > 0:
                time.sleep(wait)
        return Frame(vf.to_ndarray(format="rgb24"), pts, self.time_base)

    def close(self) -> None:
        self._container.close()


class ImageFolderSource:
    """Images of a folder in name order, as frames at `fps`. An unreadable file raises a
    ValueError naming it from `recv()` (the engine skips it and goes on)."""

    def __init__(self, path: str | os.PathLike, fps: float = 30.0) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.path}")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.path}")
        self.fps = fps
        self.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        self.frame_count = len(self.files)
        self._index = 0

    def recv(self) -> Frame:
        if self._index >= len(self.files):
            raise EndOfStream
        i = self._index
        self._index += 1
        return Frame(read_image(self.files[i]), i, self.time_base)

    def close(self) -> None:
        pass


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB (PyAV decodes it); ValueError naming the file otherwise.

    Decoding errors are not concealed (FFmpeg's `err_detect=explode`): a truncated JPEG would
    otherwise come back with its missing part grey, and then be edited or "have no face"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise ValueError(f"cannot decode image {path}: it holds no picture")
            stream = c.streams.video[0]
            stream.codec_context.options = {"err_detect": "explode"}
            vf = next(c.decode(stream))
            return vf.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration) as err:
        raise ValueError(f"cannot decode image {path}: the file is truncated, corrupt or not an image ({err or 'no picture'})") from None


def open_source(spec: str | int, *, width: int = 640, height: int = 480, fps: float = 30.0, realtime: bool = True, frames: int | None = None):
    """`synthetic`, a camera index, a video file or an image folder -> a source."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return WebcamSource(int(spec), width, height, fps)
    if spec == "synthetic":
        return SyntheticFaceSource(width, height, fps, frames=frames, realtime=realtime)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, fps)
    if path.is_file():
        return VideoFileSource(path, realtime=realtime)
    raise FileNotFoundError(f"source {spec!r} is not 'synthetic', a camera index, a video file or an image folder")

"""Atomic H.264 MP4 writing with PyAV, optionally copying the audio of a source file.

The file is written under a temporary name in the destination folder and renamed only by
`close()`; a crash or `close(abort=True)` leaves no truncated file that looks complete. A
failed write (disk full, a vanished folder) raises `VideoWriteError` naming the file, and
the temporary file is removed.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .frame import Frame

log = logging.getLogger(__name__)

# audio codecs MP4 carries as they are; others are re-encoded to AAC
_MP4_AUDIO = {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"}


class VideoWriteError(RuntimeError):
    """Writing the output video failed (the partial file has been removed)."""


def _write_error(path: Path, err: Exception) -> VideoWriteError:
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        reason = "no space left on the device (or the file is too large for it)"
    else:
        reason = getattr(err, "strerror", None) or str(err)
    return VideoWriteError(f"cannot write {path}: {reason}; nothing was written")


class VideoFileSink:
    """Writes frames as H.264 (libx264, yuv420p). pts/time_base of the frames are kept, so
    dropping frames (live) keeps real timing and offline output has the input's duration.

    `audio_from`: a media file whose first audio stream is copied in, interleaved as video
    progresses. Odd frame sizes are padded by one pixel (yuv420p needs even sizes)."""

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float = 30.0,
        audio_from: str | os.PathLike | None = None,
        crf: int = 18,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {self.path.parent}")
        if self.path.is_dir():
            raise ValueError(f"output {self.path} is a directory; give a file name such as {self.path / 'out.mp4'}")
        if self.path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
            raise ValueError(f"output video must end in .mp4, .mov or .mkv, got {self.path.name}")
        self.fps = fps
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=f".part{self.path.suffix}", dir=self.path.parent)
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes owner-only files; the result is an ordinary output file
        self.tmp_path = Path(tmp)
        fmt = {".mkv": "matroska", ".mov": "mov"}.get(self.path.suffix.lower(), "mp4")
        self._out = av.open(str(self.tmp_path), mode="w", format=fmt)
        self._crf, self._preset = crf, preset
        self._video: av.VideoStream | None = None
        self._size: tuple[int, int] | None = None
        self._last_pts: int | None = None
        self._time_base: Fraction | None = None
        self.frames_written = 0
        self._closed = False
        self._audio_in = self._audio_out = self._audio_packets = self._audio_encoder = None
        self._pending_audio = None
        if audio_from is not None:
            self._open_audio(Path(audio_from))

    # audio ---------------------------------------------------------------------------
    def _open_audio(self, src: Path) -> None:
        inp = av.open(str(src))
        if not inp.streams.audio:
            inp.close()
            return
        a = inp.streams.audio[0]
        self._audio_in = inp
        if a.codec_context.name in _MP4_AUDIO or self.path.suffix.lower() == ".mkv":
            self._audio_out = self._out.add_stream_from_template(a)
        else:
            self._audio_out = self._out.add_stream("aac", rate=a.codec_context.sample_rate)
            self._audio_encoder = True
        self._audio_packets = inp.demux(a)

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy source audio up to `seconds` (all of it when None), keeping the file interleaved."""
        if self._audio_packets is None:
            return
        while True:
            pkt = self._pending_audio
            if pkt is None:
                try:
                    pkt = next(self._audio_packets)
                except (StopIteration, av.error.FFmpegError):
                    self._audio_packets = None
                    break
            if pkt.dts is None and pkt.size == 0:
                continue
            t = float(pkt.pts * pkt.time_base) if pkt.pts is not None else 0.0
            if seconds is not None and t > seconds:
                self._pending_audio = pkt
                return
            self._pending_audio = None
            if self._audio_encoder:
                for af in pkt.decode():
                    af.pts = None
                    self._out.mux(self._audio_out.encode(af))
            else:
                pkt.stream = self._audio_out
                self._out.mux(pkt)

    # video ---------------------------------------------------------------------------
    def _open_video(self, frame: Frame) -> None:
        w, h = frame.size
        self._size = (w + w % 2, h + h % 2)
        if self._size != (w, h):
            log.info("padding %dx%d frames to %dx%d for yuv420p", w, h, *self._size)
        rate = Fraction(self.fps).limit_denominator(1001)
        s = self._out.add_stream("libx264", rate=rate, options={"crf": str(self._crf), "preset": self._preset})
        s.width, s.height = self._size
        s.pix_fmt = "yuv420p"
        self._time_base = frame.time_base
        s.codec_context.time_base = frame.time_base
        s.time_base = frame.time_base
        self._video = s

    def send(self, frame: Frame) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path} is already closed")
        if self._video is None:
            self._open_video(frame)
        img = frame.image
        if (img.shape[1], img.shape[0]) != self._size:
            if (img.shape[1] + img.shape[1] % 2, img.shape[0] + img.shape[0] % 2) != self._size:
                raise ValueError(f"frame size changed mid-stream: {img.shape[1]}x{img.shape[0]}, file is {self._size[0]}x{self._size[1]}")
            img = np.pad(img, ((0, self._size[1] - img.shape[0]), (0, self._size[0] - img.shape[1]), (0, 0)), mode="edge")
        pts = int(Fraction(frame.pts) * frame.time_base / self._time_base)
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # encoders need strictly increasing timestamps
        self._last_pts = pts
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts = pts
        vf.time_base = self._time_base
        try:
            self._out.mux(self._video.encode(vf))
            self._mux_audio_until(float(pts * self._time_base))
        except OSError as err:  # av.error.OSError included: ENOSPC and friends
            raise _write_error(self.path, err) from err
        self.frames_written += 1

    def close(self, abort: bool = False) -> None:
        """Finish the file and move it into place; with `abort`, delete the partial file."""
        if self._closed:
            return
        self._closed = True
        committed = False
        try:
            if not abort:
                if self._video is None:
                    raise RuntimeError(f"no frames were written; {self.path} not created")
                try:
                    self._out.mux(self._video.encode(None))
                    self._mux_audio_until(None)
                    if self._audio_encoder:
                        self._out.mux(self._audio_out.encode(None))
                    self._out.close()
                    os.replace(self.tmp_path, self.path)
                except OSError as err:
                    raise _write_error(self.path, err) from err
                committed = True
        finally:
            if self._audio_in is not None:
                self._audio_in.close()
            if not committed:
                with contextlib.suppress(Exception):
                    self._out.close()
                self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> VideoFileSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)


def probe(path: str | os.PathLike) -> dict:
    """Frame count, duration (s), size, fps and whether there is audio: for tests and reports."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        out = {
            "frames": n,
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "fps": float(v.average_rate or 0),
            "video_duration": float(v.duration * v.time_base) if v.duration else None,
            "duration": c.duration / av.time_base if c.duration else None,
            "audio": bool(c.streams.audio),
        }
        if c.streams.audio:
            a = c.streams.audio[0]
            out["audio_codec"] = a.codec_context.name
            out["audio_duration"] = float(a.duration * a.time_base) if a.duration else None
        return out

"""Bridges between aiortc tracks (asyncio) and the engine (threads).

`TrackSource` pulls frames from a remote MediaStreamTrack for the engine's capture thread;
`TrackSink` is a VideoStreamTrack whose `recv()` returns the engine's latest output frame.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from fractions import Fraction

import av
from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from .frame import EndOfStream, Frame


class TrackSource:
    """Engine source reading an aiortc video track that lives on event loop `loop`.

    `recv()` is called from the capture thread and blocks on the loop; a track that has
    ended (MediaStreamError) or a closed source means EndOfStream."""

    def __init__(self, track: MediaStreamTrack, loop: asyncio.AbstractEventLoop, timeout: float = 10.0) -> None:
        if track.kind != "video":
            raise ValueError(f"TrackSource needs a video track, got {track.kind!r}")
        self.track, self.loop, self.timeout = track, loop, timeout
        self._closed = False

    def recv(self) -> Frame:
        if self._closed:
            raise EndOfStream
        fut = asyncio.run_coroutine_threadsafe(self.track.recv(), self.loop)
        try:
            vf = fut.result(self.timeout)
        except MediaStreamError:
            raise EndOfStream from None
        except concurrent.futures.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            fut.cancel()
            raise RuntimeError(f"no video from the WebRTC track for {self.timeout:g} s") from None
        tb = vf.time_base or Fraction(1, 90000)
        return Frame(vf.to_ndarray(format="rgb24"), vf.pts or 0, tb)

    def close(self) -> None:
        self._closed = True


class TrackSink(VideoStreamTrack):
    """Engine sink that is also an outgoing aiortc video track.

    `send()` (engine thread) replaces the latest frame; `recv()` (event loop) waits for the
    first frame, then returns the newest one at the track's pace, so a slow engine repeats
    frames rather than stalling the call."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._ready = asyncio.Event()

    def send(self, frame: Frame) -> None:
        with self._lock:
            first = self._latest is None
            self._latest = frame
        if first:
            self.loop.call_soon_threadsafe(self._ready.set)

    def close(self, abort: bool = False) -> None:
        self.loop.call_soon_threadsafe(self.stop)

    @property
    def latest(self) -> Frame | None:
        with self._lock:
            return self._latest

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()  # raises MediaStreamError once stopped
        await self._ready.wait()
        frame = self.latest
        vf = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        vf.pts, vf.time_base = pts, time_base
        return vf

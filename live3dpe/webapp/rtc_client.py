"""A Python client for `live3dpe serve`: send frames from any stream `Source`, get edited ones back.

Used by the loopback tests and handy for driving a server headless (benchmarks, scripts).
RTP rewrites timestamps on both legs, so a received frame cannot be matched to its source
frame by pts; instead the client keeps the recent sent frames and `closest_sent` finds the
one a received frame is nearest to.
"""
from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable

import aiohttp
import av
import numpy as np
import yarl
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

from live3dpe.stream.engine import Source
from live3dpe.stream.frame import EndOfStream

from .server import LOOPBACK_NAMES, bind_ice_to_loopback


class SourceTrack(VideoStreamTrack):
    """An outgoing video track fed by a stream `Source` (read off the event loop)."""

    def __init__(self, source: Source, keep: int = 60) -> None:
        super().__init__()
        self.source = source
        self.sent: collections.deque[np.ndarray] = collections.deque(maxlen=keep)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        try:
            frame = await asyncio.get_running_loop().run_in_executor(None, self.source.recv)
        except EndOfStream:
            self.stop()
            raise MediaStreamError from None
        out = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        out.pts, out.time_base = pts, time_base
        self.sent.append(frame.image)
        return out


class LoopbackClient:
    """Connects to a server at `url`, streams `source`, collects edited frames and messages.

    Use as `async with LoopbackClient(url, source) as client:`. `bind_loopback`: gather ICE
    candidates on 127.0.0.1 only (default: when `url` names a loopback host); False gathers
    on the network interfaces, as a browser does.
    """

    def __init__(self, url: str, source: Source, bind_loopback: bool | None = None) -> None:
        self.url = url.rstrip("/")
        host = yarl.URL(self.url).host
        self.bind_loopback = host in LOOPBACK_NAMES if bind_loopback is None else bind_loopback
        self.track = SourceTrack(source)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.latest: np.ndarray | None = None
        self.n_received = 0
        self.states: list[dict] = []
        self.errors: list[str] = []
        self.prompt_matches: list[dict] = []
        self.stats: dict | None = None
        self._news = asyncio.Condition()
        self._tasks: list[asyncio.Task] = []

    async def __aenter__(self) -> LoopbackClient:
        self.channel = self.pc.createDataChannel("control")
        self.channel.on("message", lambda raw: asyncio.ensure_future(self._on_message(raw)))
        self.pc.addTrack(self.track)
        if self.bind_loopback:
            bind_ice_to_loopback(self.pc)

        @self.pc.on("track")
        def on_track(track) -> None:
            self._tasks.append(asyncio.ensure_future(self._read(track)))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            offer = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
            async with http.post(f"{self.url}/offer", json=offer) as resp:
                answer = await resp.json()
                if resp.status != 200:
                    await self.pc.close()
                    raise RuntimeError(f"server refused the offer ({resp.status}): {answer.get('error')}")
        await self.pc.setRemoteDescription(RTCSessionDescription(**answer))
        return self

    async def __aexit__(self, *exc) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        self.track.source.close()

    async def _notify(self) -> None:
        async with self._news:
            self._news.notify_all()

    async def _read(self, track) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self.latest = frame.to_ndarray(format="rgb24")
            self.n_received += 1
            await self._notify()

    async def _on_message(self, raw: str) -> None:
        msg = json.loads(raw)
        if msg["type"] == "state":
            self.states.append(msg)
        elif msg["type"] == "stats":
            self.stats = msg
        elif msg["type"] == "error":
            self.errors.append(msg["message"])
        elif msg["type"] == "prompt_match":
            self.prompt_matches.append(msg)
        await self._notify()

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition"):
        """Wait until `predicate()` is truthy and return its value."""

        async def loop():
            async with self._news:
                while not (value := predicate()):
                    await self._news.wait()
                return value

        try:
            return await asyncio.wait_for(loop(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}") from None

    async def next_frame(self, skip: int = 0, timeout: float = 30.0) -> np.ndarray:
        """The newest edited frame after `skip` more have arrived (skip frames already in flight)."""
        target = self.n_received + skip
        await self.wait_for(lambda: self.n_received > target, timeout, "an edited frame")
        return self.latest

    def closest_sent(self, received: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> tuple[np.ndarray, float]:
        """The recently sent frame whose `transform` is nearest to `received`, and that mean abs difference."""
        candidates = [(s, t) for s in self.track.sent if (t := transform(s)).shape == received.shape]
        if not candidates:
            raise ValueError(f"no sent frame has the received size {received.shape}")
        diffs = [float(np.abs(t.astype(np.int16) - received).mean()) for _, t in candidates]
        best = int(np.argmin(diffs))
        return candidates[best][0], diffs[best]

    def _send(self, msg: dict) -> None:
        if self.channel.readyState != "open":
            raise RuntimeError("data channel is not open")
        self.channel.send(json.dumps(msg))

    async def control(self, timeout: float = 10.0, **changes) -> dict:
        """Send a control message; returns the server's resulting state."""
        await self.wait_for(lambda: self.channel.readyState == "open", timeout, "the data channel")
        n = len(self.states)
        self._send({"type": "control", **changes})
        return await self.wait_for(lambda: len(self.states) > n and self.states[-1], timeout, "the new state")

    async def control_error(self, timeout: float = 10.0, **changes) -> str:
        """Send a control message the server should refuse; returns its error text."""
        return await self.raw_error(json.dumps({"type": "control", **changes}), timeout)

    async def raw_error(self, raw: str, timeout: float = 10.0) -> str:
        """Send `raw` as it is (malformed messages included); returns the server's error text."""
        await self.wait_for(lambda: self.channel.readyState == "open", timeout, "the data channel")
        n = len(self.errors)
        self.channel.send(raw)
        return await self.wait_for(lambda: len(self.errors) > n and self.errors[-1], timeout, "an error")

    async def wait_stats(self, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        return await self.wait_for(lambda: self.stats if self.stats and predicate(self.stats) else None, timeout, "stats")

    async def wait_applied(self, version: int, timeout: float = 60.0) -> np.ndarray:
        """The first edited frame surely made with settings `version` (or newer).

        Frames already encoded or in flight when the server reports the version are skipped."""
        await self.wait_stats(lambda s: (s["applied_version"] or 0) >= version, timeout)
        return await self.next_frame(skip=3, timeout=timeout)

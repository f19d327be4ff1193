"""`live3dpe serve`: the WebRTC demo server (aiohttp for the page and signalling, aiortc for media).

Each browser peer gets its own stream `Engine` (latest-frame queues, the model in worker
threads, never on the event loop), its own `Control` driven by the data channel, and its
own `Stats` pushed back to the page. The incoming track is read directly by the engine's
source: no MediaRelay, so nothing buffers frames without bound. Signalling is one POST
of a complete offer (aiortc does not trickle ICE); no STUN/TURN server is configured, so
only host candidates are used, which is right for localhost and a LAN.

Hardening, because any web page the user visits can talk to a server on localhost:
`/offer` only accepts `Content-Type: application/json` (a cross-site page cannot send that
without a CORS preflight, which this server never grants), refuses an `Origin` other than
its own or `allowed_origins`, and, on a loopback socket, a `Host` that is not a loopback
name (DNS rebinding). A peer that has not connected within `connect_timeout_s` is dropped,
so offers that never complete ICE cannot hold the peer slots. Request bodies and
data-channel messages are size- and depth-bounded JSON; a bad message gets an error reply
and never ends the session. When the offer arrives on a loopback socket the media (UDP)
sockets are bound to 127.0.0.1 too, so nothing listens on the network.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from live3dpe.model.known_styles import styles_payload
from live3dpe.pipeline.work import FaceWork
from live3dpe.stream.control import Control
from live3dpe.stream.engine import Engine, Stage
from live3dpe.stream.stats import Stats
from live3dpe.stream.webrtc import TrackSink, TrackSource

from . import protocol

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
MAX_OFFER_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 15.0  # offer answered -> media flowing; a real client needs about a second
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
StageFactory = Callable[[], Sequence[Stage]]
PromptFeedback = Callable[[str], "dict | None"]  # typed prompt -> nearest known style (known_styles.prompt_feedback)


class PeerSession:
    """One browser connection: peer connection, engine, control and stats."""

    def __init__(
        self, pc: RTCPeerConnection, make_stages: StageFactory, initial: dict | None = None, feedback: PromptFeedback | None = None,
        latency: str = "balanced",
    ) -> None:
        self.id = uuid.uuid4().hex[:8]
        self.latency = latency  # the engine's schedule (`Engine(latency=...)`)
        self.pc = pc
        self.control = Control(**(initial or {}))
        self.stats = Stats()
        self.channel: RTCDataChannel | None = None
        self.engine: Engine | None = None
        self.applied_version: int | None = None
        self._make_stages = make_stages
        self._feedback = feedback
        self._feedback_tasks: set[asyncio.Task] = set()  # referenced until done, so none is collected mid-way
        self._stats_task: asyncio.Task | None = None
        self.watchdog: asyncio.Task | None = None  # drops the peer if it never connects
        self._closed = False

    def attach_video(self, track: MediaStreamTrack) -> None:
        """Run the engine on the browser's camera track and send its output back on the same transceiver."""
        if self.engine is not None:
            log.warning("peer %s sent a second video track; ignoring it", self.id)
            return
        loop = asyncio.get_running_loop()
        source = TrackSource(track, loop)
        sink = TrackSink(loop)
        self.pc.addTrack(sink)
        self.engine = Engine(
            source, sink, self._make_stages(), live=True, control=self.control, stats=self.stats, latency=self.latency,
            on_output=self._note_version, make_work=FaceWork,
        )
        self.engine.start()

    def _note_version(self, work: FaceWork) -> None:
        """Remember which settings the latest outgoing frame was made with (for the page)."""
        self.applied_version = work.control.version

    def attach_channel(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self._on_message)
        state = self.control.get()
        self._send(protocol.state_message(state))
        self._report_prompt(state.prompt_text)
        self._stats_task = asyncio.ensure_future(self._push_stats())

    def _on_message(self, raw: str | bytes) -> None:
        try:
            msg = protocol.parse_message(raw)
            if msg["type"] == "ping":
                self._send({"type": "pong", "t": msg.get("t")})
                return
            state = self.control.update(**protocol.control_changes(msg))
        except (protocol.ProtocolError, ValueError) as err:
            self._send(protocol.error_message(err))
            return
        except Exception as err:  # a bug must not tear the peer down: report it and keep streaming
            log.exception("peer %s: message handling failed", self.id)
            self._send(protocol.error_message(RuntimeError(f"server could not apply the message ({type(err).__name__})")))
            return
        log.info("peer %s: control v%d %s", self.id, state.version, sorted(k for k in msg if k != "type"))
        self._send(protocol.state_message(state))
        if "prompt" in msg:
            self._report_prompt(state.prompt_text)

    def _report_prompt(self, text: str | None) -> None:
        """Send the nearest known style of a text prompt, worked out off the event loop
        (the text encoder may need seconds the first time)."""
        if self._feedback is None or not text:
            return

        async def report() -> None:
            try:
                feedback = await asyncio.get_running_loop().run_in_executor(None, self._feedback, text)
            except Exception:  # feedback is advice: never let it end the session
                log.exception("peer %s: prompt feedback failed", self.id)
                return
            if feedback is not None:
                self._send(protocol.prompt_match_message(feedback))

        task = asyncio.ensure_future(report())
        self._feedback_tasks.add(task)
        task.add_done_callback(self._feedback_tasks.discard)

    def _send(self, msg: dict) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(msg))

    async def _push_stats(self) -> None:
        while not self._closed:
            await asyncio.sleep(protocol.STATS_PERIOD_S)
            self._send(protocol.stats_message(self.stats.snapshot(), self.applied_version))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._stats_task, self.watchdog):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self.engine is None:
            await self.pc.close()
            return
        self.engine.stop()
        self.engine.source.close()
        await self.pc.close()  # ends the incoming track, so a capture thread waiting on it wakes up
        await asyncio.get_running_loop().run_in_executor(None, self.engine.join, 5.0)
        self.engine.sink.close(abort=True)


class WebRTCServer:
    """The aiohttp application and the set of live peer sessions (at most `max_peers`)."""

    def __init__(
        self,
        make_stages: StageFactory,
        max_peers: int = 2,
        initial_control: dict | None = None,
        *,
        allowed_origins: Sequence[str] = (),
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        known_styles: dict | None = None,
        prompt_feedback: PromptFeedback | None = None,
        latency: str = "balanced",
    ) -> None:
        """known_styles: what GET /styles answers (`known_styles.styles_payload`); prompt_feedback:
        the nearest known style of a typed prompt, sent to the page after each Apply; latency: each
        peer engine's schedule (`Engine(latency=...)`)."""
        if max_peers < 1:
            raise ValueError(f"max_peers must be at least 1, got {max_peers}")
        if not connect_timeout_s > 0:
            raise ValueError(f"connect_timeout_s must be positive, got {connect_timeout_s}")
        self.make_stages = make_stages
        self.max_peers = max_peers
        self.initial_control = dict(initial_control or {})
        if "prompt_text" in self.initial_control:
            self.initial_control["prompt_text"] = protocol.clean_prompt(self.initial_control["prompt_text"])
        self.allowed_origins = {o.rstrip("/") for o in allowed_origins}
        self.connect_timeout_s = connect_timeout_s
        self.known_styles = known_styles or styles_payload(None)
        self.prompt_feedback = prompt_feedback
        self.latency = latency
        self.sessions: dict[str, PeerSession] = {}
        self.app = web.Application(client_max_size=MAX_OFFER_BYTES)
        self.app.add_routes(
            [
                web.get("/", self._index),
                web.post("/offer", self._offer),
                web.get("/health", self._health),
                web.get("/styles", self._styles),
                web.static("/static", STATIC_DIR),
            ]
        )
        self.app.on_shutdown.append(self._on_shutdown)

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"peers": len(self.sessions), "max_peers": self.max_peers})

    async def _styles(self, request: web.Request) -> web.Response:
        return web.json_response(self.known_styles)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why a request to /offer must not be served (cross-site, rebound DNS name, not JSON), or None."""
        if _on_loopback(request) and request.url.host not in LOOPBACK_NAMES:
            return _error(403, f"host {request.host!r} is not this machine's loopback name; open the page as http://127.0.0.1 or http://localhost")
        origin = request.headers.get("Origin")
        if origin is not None and origin.rstrip("/") not in self.allowed_origins | {f"{request.scheme}://{request.host}"}:
            return _error(403, f"cross-site request from origin {origin!r} refused")
        if request.content_length is not None and request.content_length > MAX_OFFER_BYTES:
            return _error(413, f"offer larger than {MAX_OFFER_BYTES} bytes")
        if request.content_type != "application/json":
            return _error(400, f"request body must be JSON {{sdp, type}} sent as Content-Type: application/json, got {request.content_type!r}")
        return None

    async def _offer(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        try:
            body = protocol.load_json(await request.read(), MAX_OFFER_BYTES)
        except protocol.ProtocolError as err:
            return _error(400, f"request body must be JSON {{sdp, type}}: {err}")
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"offer larger than {MAX_OFFER_BYTES} bytes")
        if not isinstance(body, dict) or body.get("type") != "offer" or not isinstance(body.get("sdp"), str):
            return _error(400, "request body must be JSON {sdp: <string>, type: 'offer'}")
        if len(self.sessions) >= self.max_peers:
            return _error(503, f"server is full ({self.max_peers} peers); try again later")

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        session = PeerSession(pc, self.make_stages, self.initial_control, self.prompt_feedback, self.latency)
        self.sessions[session.id] = session

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                session.attach_video(track)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            session.attach_channel(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            log.info("peer %s: %s", session.id, pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                await self._drop(session)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type="offer"))
            if session.engine is None:
                raise ValueError("offer has no video track to edit")
            if _on_loopback(request):
                bind_ice_to_loopback(pc)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as err:  # malformed SDP surfaces as assorted exception types
            await self._drop(session)
            return _error(400, f"bad offer: {err}")
        session.watchdog = asyncio.ensure_future(self._expire_unconnected(session))
        log.info("peer %s answered (%d/%d)", session.id, len(self.sessions), self.max_peers)
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def _expire_unconnected(self, session: PeerSession) -> None:
        """Free the slot of a peer that has not connected in time (ICE stuck in new/checking)."""
        await asyncio.sleep(self.connect_timeout_s)
        if session.pc.connectionState != "connected" and session.id in self.sessions:
            log.warning("peer %s did not connect within %g s (%s); dropping it", session.id, self.connect_timeout_s, session.pc.connectionState)
            await self._drop(session)

    async def _drop(self, session: PeerSession) -> None:
        if self.sessions.pop(session.id, None) is not None:
            log.info("peer %s gone", session.id)
        await session.close()

    async def _on_shutdown(self, app: web.Application) -> None:
        await asyncio.gather(*(self._drop(s) for s in list(self.sessions.values())))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _on_loopback(request: web.Request) -> bool:
    """Whether the request came in on a loopback socket (the server is then reachable only from this machine)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    try:
        return sockname is not None and ipaddress.ip_address(sockname[0]).is_loopback
    except ValueError:
        return False


def bind_ice_to_loopback(pc: RTCPeerConnection) -> None:
    """Gather ICE host candidates on 127.0.0.1 only, so the media sockets are not reachable from the network.

    aioice always gathers every non-loopback interface address and aiortc has no option to choose
    (aiortc/aioice issue #2), so each of `pc`'s gatherers gets its own gathering step. Call after
    setRemoteDescription (which creates the transports) and before setLocalDescription (which gathers)."""
    transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        transports.append(pc.sctp.transport)
    for dtls in transports:
        connection = dtls.transport.iceGatherer._connection

        async def gather(connection=connection) -> None:
            if connection._local_candidates_start:
                return
            connection._local_candidates_start = True
            for component in sorted(connection._components):
                connection._local_candidates += await connection.get_component_candidates(component=component, addresses=["127.0.0.1"])
            connection._local_candidates_end = True

        connection.gather_candidates = gather


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """HTTPS context from PEM files; browsers allow the camera only on https:// or localhost."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("--cert and --key must be given together")
    for path in (cert, key):
        if not Path(path).is_file():
            raise FileNotFoundError(f"TLS file not found: {path}")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


@asynccontextmanager
async def running_app(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve `app` on the current event loop while the block runs; yields its base URL (port 0: any free port)."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if ssl_context else 'http'}://{host}:{bound}"
    finally:
        await runner.cleanup()

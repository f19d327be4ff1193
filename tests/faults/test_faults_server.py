"""Fault injection against `live3dpe serve`: hostile requests, hostile data-channel messages, stuck ICE.

Everything runs on loopback with a stand-in stage (inverted colours), so only the server's
own behaviour is under test: a clear refusal, a slot that is freed, a peer that survives.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from live3dpe.stream.control import MAX_PROMPT_CHARS
from live3dpe.stream.engine import Stage, Work
from live3dpe.stream.synthetic import SyntheticFaceSource
from live3dpe.webapp.rtc_client import LoopbackClient, SourceTrack
from live3dpe.webapp.server import WebRTCServer, running_app

pytestmark = pytest.mark.timeout(120)

# short, to keep the tests quick, yet long enough for the POSTs and a real client's connection on a busy CPU
CONNECT_TIMEOUT_S = 3.0


def _invert(work: Work) -> None:
    work.output = 255 - work.frame.image


def _server(**kwargs) -> WebRTCServer:
    return WebRTCServer(lambda: [Stage("invert", _invert)], **kwargs)


def _faces() -> SyntheticFaceSource:
    return SyntheticFaceSource(160, 120, fps=15)


async def _offer_sdp() -> str:
    """A real offer SDP from a client that then goes away: it never connects."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(SourceTrack(_faces()))
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    assert "a=candidate" in sdp
    return sdp


async def _stuck_offer() -> str:
    """An offer with its ICE candidates and end-of-candidates removed: it can never connect."""
    sdp = await _offer_sdp()
    return "".join(line + "\r\n" for line in sdp.splitlines() if not line.startswith(("a=candidate", "a=end-of-candidates")))


async def _post(http: aiohttp.ClientSession, url: str, body: str, **headers) -> tuple[int, dict]:
    async with http.post(f"{url}/offer", data=body, headers=headers) as r:
        return r.status, await r.json()


def test_cross_site_text_plain_offers_cannot_lock_the_peer_slots():
    """Defect 1: a page on another origin posted text/plain offers that held every slot for minutes."""

    async def scenario():
        server = _server(max_peers=2)
        offer = json.dumps({"sdp": await _stuck_offer(), "type": "offer"})
        async with running_app(server.app) as url, aiohttp.ClientSession() as http:
            status, body = await _post(http, url, offer, Origin="http://evil.example", **{"Content-Type": "text/plain"})
            assert status == 403 and "evil.example" in body["error"]
            status, body = await _post(http, url, offer, Origin="http://evil.example", **{"Content-Type": "application/json"})
            assert status == 403 and "cross-site" in body["error"]
            status, body = await _post(http, url, offer, **{"Content-Type": "text/plain"})
            assert status == 400 and "application/json" in body["error"]
            status, body = await _post(http, url, offer, Origin="null", **{"Content-Type": "application/json"})
            assert status == 403
            assert not server.sessions
            # the page's own origin is fine
            status, _ = await _post(http, url, offer, Origin=url, **{"Content-Type": "application/json"})
            assert status == 200 and len(server.sessions) == 1

    asyncio.run(scenario())


def test_allowed_origins_are_accepted():
    async def scenario():
        server = _server(allowed_origins=["https://demo.example"])
        offer = json.dumps({"sdp": await _stuck_offer(), "type": "offer"})
        async with running_app(server.app) as url, aiohttp.ClientSession() as http:
            status, _ = await _post(http, url, offer, Origin="https://demo.example", **{"Content-Type": "application/json"})
            assert status == 200

    asyncio.run(scenario())


def test_dns_rebinding_host_is_refused_on_loopback():
    async def scenario():
        server = _server()
        offer = json.dumps({"sdp": await _stuck_offer(), "type": "offer"})
        async with running_app(server.app) as url, aiohttp.ClientSession() as http:
            port = url.rsplit(":", 1)[1]
            status, body = await _post(http, url, offer, Host=f"evil.example:{port}", Origin=f"http://evil.example:{port}",
                                       **{"Content-Type": "application/json"})  # fmt: skip
            assert status == 403 and "loopback" in body["error"]
            status, _ = await _post(http, url, offer, Host=f"localhost:{port}", **{"Content-Type": "application/json"})
            assert status == 200

    asyncio.run(scenario())


def test_stuck_ice_sessions_are_dropped_and_free_their_slot():
    """Defect 1: an offer without candidates (or a client that never connects) held a slot for 65 s to 13+ min."""

    async def scenario():
        server = _server(max_peers=2, connect_timeout_s=CONNECT_TIMEOUT_S)
        offer = json.dumps({"sdp": await _stuck_offer(), "type": "offer"})
        async with running_app(server.app) as url, aiohttp.ClientSession() as http:
            for _ in range(2):
                assert (await _post(http, url, offer, **{"Content-Type": "application/json"}))[0] == 200
            status, body = await _post(http, url, offer, **{"Content-Type": "application/json"})
            assert status == 503 and "full" in body["error"]
            for _ in range(200):  # bounded: 20 s, well below the 13+ min it was
                if not server.sessions:
                    break
                await asyncio.sleep(0.1)
            assert not server.sessions
            # the slots are usable again by a real client
            async with LoopbackClient(url, _faces()) as client:
                await client.next_frame(skip=1)
                await asyncio.sleep(CONNECT_TIMEOUT_S + 0.5)  # past the timeout: a connected peer is kept
                assert len(server.sessions) == 1

    asyncio.run(scenario())


def test_offer_whose_client_never_connects_frees_its_slot_within_the_timeout():
    """Defect 1: an offer whose client never connected held a slot for about 65 s (ICE's own timeout)."""

    async def scenario():
        server = _server(max_peers=1, connect_timeout_s=CONNECT_TIMEOUT_S)
        offer = json.dumps({"sdp": await _offer_sdp(), "type": "offer"})
        async with running_app(server.app) as url, aiohttp.ClientSession() as http:
            assert (await _post(http, url, offer, **{"Content-Type": "application/json"}))[0] == 200
            assert (await _post(http, url, offer, **{"Content-Type": "application/json"}))[0] == 503
            for _ in range(200):  # bounded: 20 s, well below ICE's own ~65 s
                if not server.sessions:
                    break
                await asyncio.sleep(0.1)
            assert not server.sessions

    asyncio.run(scenario())


def test_model_failing_on_one_frame_keeps_the_peer_and_the_edit():
    """Build list: a model that raises on one frame; that frame goes out unedited, the session lives on."""
    calls = {"n": 0}

    def flaky(work: Work) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA error: out of memory")
        _invert(work)

    async def scenario():
        server = WebRTCServer(lambda: [Stage("flaky", flaky)])
        async with running_app(server.app) as url, LoopbackClient(url, _faces()) as client:
            await client.wait_for(lambda: calls["n"] > 6, what="frames after the failing one")
            got = await client.next_frame(skip=2)
            assert client.closest_sent(got, lambda s: 255 - s)[1] < 20  # edited again
            assert len(server.sessions) == 1

    asyncio.run(scenario())


def test_connect_timeout_must_be_positive():
    with pytest.raises(ValueError, match="connect_timeout_s"):
        _server(connect_timeout_s=0)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
        ('{"sdp": NaN, "type": "offer"}', "NaN"),
        ("{" * 10, "not valid JSON"),
    ],
    ids=["deep-nesting", "nan", "truncated"],
)
def test_hostile_offer_json_is_a_400_not_a_500(body, needle):
    """Defect 7: deeply nested JSON to /offer was a 500 with RecursionError."""

    async def scenario():
        server = _server()
        async with running_app(server.app) as url, aiohttp.ClientSession() as http:
            status, reply = await _post(http, url, body, **{"Content-Type": "application/json"})
            assert status == 400 and needle in reply["error"]
            assert not server.sessions

    asyncio.run(scenario())


_DEEP = "[" * 20_000 + "]" * 20_000


@pytest.mark.parametrize(
    "hostile",
    [
        {'{"type": "control", "view": ' + _DEEP + "}": "nested too deeply"},
        {json.dumps({"type": "control", "prompt_image": "data:image/png;base64,"}): "empty"},
        {'{"type": "control", "view": {"yaw": NaN}}': "NaN"},
        {
            '{"type": "control", "view": {"yaw": 1e999}}': "finite",
            '{"type": "control", "view": {"yaw": true}}': "finite numeric",
            json.dumps({"type": "control", "prompt_image": "data:image/png;base64,!!!"}): "base64",
            json.dumps({"type": "control", "prompt": "x" * (MAX_PROMPT_CHARS + 1)}): "too long",
            "\xff not json": "not valid JSON",
        },
    ],
    ids=["deep-nesting", "empty-data-url", "nan-view", "other-bad-values"],
)
def test_bad_data_channel_messages_get_an_error_and_the_peer_stays_alive(hostile):
    """Defect 7: deep nesting or an empty data-URL over the data channel tore the peer down;
    `{"view": {"yaw": NaN}}` was accepted, and frames then passed through unedited."""

    async def scenario():
        server = _server()
        async with running_app(server.app) as url, LoopbackClient(url, _faces()) as client:
            await client.next_frame(skip=1)
            for raw, needle in hostile.items():
                assert needle in await client.raw_error(raw, timeout=60)  # generous: CI may share the CPU
            state = await client.control(prompt="still here", view={"yaw": 10, "pitch": 0}, timeout=60)
            assert state["prompt"] == "still here" and state["view"] == "yaw=10,pitch=0"
            n = client.n_received
            got = await client.next_frame(skip=3)
            assert client.n_received > n and len(server.sessions) == 1
            assert client.closest_sent(got, lambda s: 255 - s)[1] < 20  # still edited, not passed through

    asyncio.run(scenario())


def test_initial_prompt_over_the_limit_is_refused():
    """Defect 9: the 300-character prompt limit was only enforced by the page."""
    with pytest.raises(ValueError, match="too long"):
        WebRTCServer(lambda: [], initial_control={"prompt_text": "x" * (MAX_PROMPT_CHARS + 1)})


def test_gradio_app_enforces_the_prompt_limit_server_side(monkeypatch):
    """Defect 9: the 300-character limit of the gradio app's prompt boxes was only checked in the browser
    (`max_length`), so a direct API call reached the model with any length."""
    import numpy as np

    from live3dpe.pipeline import customize, stages
    from live3dpe.pipeline.portrait import PortraitService
    from live3dpe.webapp.gradio_app import LiveSession

    class NoModel:
        def encode_prompt(self, text=None, image=None):
            raise AssertionError(f"a {len(text)}-character prompt reached the model")

    long = "x" * (MAX_PROMPT_CHARS + 1)
    with pytest.raises(ValueError, match="too long"):
        PortraitService(NoModel()).prompt(long)
    monkeypatch.setattr(stages, "build_stages", lambda *args, **kwargs: [])
    with pytest.raises(ValueError, match="too long"):
        LiveSession(NoModel()).process(np.zeros((64, 64, 3), np.uint8), long)
    photo = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="too long"):
        customize.photo_pairs(NoModel(), None, [photo], [photo], long, None, "mine")
    assert PortraitService(NoModel()).prompt("  ") is None  # blank still means no prompt


def test_media_sockets_bind_loopback_when_signalling_is_loopback():
    """Defect 9: the UDP sockets bound every interface while signalling was loopback-only. A client
    gathering on the network interfaces (as a browser does) still connects."""

    async def scenario():
        server = _server()
        async with running_app(server.app) as url, LoopbackClient(url, _faces(), bind_loopback=False) as client:
            await client.next_frame(skip=1)
            (session,) = server.sessions.values()
            gatherers = {t.receiver.transport.transport.iceGatherer for t in session.pc.getTransceivers()}
            gatherers.add(session.pc.sctp.transport.transport.iceGatherer)
            hosts = {c.ip for g in gatherers for c in g.getLocalCandidates()}
            assert hosts and all(ipaddress.ip_address(h).is_loopback for h in hosts), hosts

    asyncio.run(scenario())

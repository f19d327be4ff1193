"""`live3dpe serve` end to end in Python: an aiortc client talks to the server over real sockets.

The server's wiring is tested with a simple stand-in stage whose output depends on the
prompt, so the assertions are exact; `test_webrtc_pipeline.py` runs the real model.
"""
from __future__ import annotations

import asyncio

import aiohttp
import pytest

from live3dpe.stream.engine import Stage, Work
from live3dpe.stream.synthetic import SyntheticFaceSource
from live3dpe.webapp.rtc_client import LoopbackClient
from live3dpe.webapp.server import WebRTCServer, running_app

pytestmark = pytest.mark.timeout(90)


def _tint(work: Work) -> None:
    """Inverted colours without a prompt; with a prompt, the red channel saturated."""
    img = work.frame.image
    if work.control.prompt_text is None:
        work.output = 255 - img
    else:
        out = img.copy()
        out[..., 0] = 255
        work.output = out


def _faces() -> SyntheticFaceSource:
    return SyntheticFaceSource(320, 240, fps=30)


def _server(max_peers: int = 1) -> WebRTCServer:
    return WebRTCServer(lambda: [Stage("tint", _tint)], max_peers=max_peers)


def test_edited_frames_come_back_and_prompt_changes_mid_stream():
    async def scenario():
        server = _server()
        async with running_app(server.app) as url, LoopbackClient(url, _faces()) as client:
            got = await client.next_frame(skip=2)
            # inverted: far from every sent frame, close to the negative of one
            assert client.closest_sent(got)[1] > 40
            assert client.closest_sent(got, lambda s: 255 - s)[1] < 20
            assert client.states[0]["version"] == 0

            state = await client.control(prompt="make it red")
            assert state["prompt"] == "make it red" and state["version"] == 1
            got = await client.wait_applied(1)
            assert got[..., 0].mean() > 235  # red channel saturated
            green = client.closest_sent(got[..., 1], lambda s: s[..., 1])[1]
            assert green < 15  # green untouched

            err = await client.control_error(view="sideways")
            assert "bad view" in err
            stats = await client.wait_stats(lambda s: s["frames_out"] > 0 and s["fps"] > 0)
            assert "tint" in stats["stage_ms"] and stats["latency_ms_p50"] is not None
            assert len(server.sessions) == 1
        for _ in range(50):  # the server notices the hang-up and frees the slot
            if not server.sessions:
                break
            await asyncio.sleep(0.1)
        assert not server.sessions

    asyncio.run(scenario())


def test_state_on_connect_carries_initial_prompt_and_stats_confirm_each_version():
    """The page's form and its "Applied" line come from these two messages."""

    async def scenario():
        server = WebRTCServer(lambda: [Stage("tint", _tint)], max_peers=1, initial_control={"prompt_text": " golden statue "})
        async with running_app(server.app) as url, LoopbackClient(url, _faces()) as client:
            first = await client.wait_for(lambda: client.states and client.states[0], what="the state on connect")
            assert first["prompt"] == "golden statue" and first["mode"] == "paste" and first["version"] >= 1
            got = await client.wait_applied(first["version"])
            assert got[..., 0].mean() > 235  # the initial prompt is what made the frames
            state = await client.control(prompt="make it red", mirror=True)
            assert state["version"] == first["version"] + 1 and state["mirror"] is True
            stats = await client.wait_stats(lambda s: s["applied_version"] >= state["version"])
            assert stats["applied_version"] == state["version"]  # reaches the acknowledged version, never beyond

    asyncio.run(scenario())


def test_peer_limit_and_bad_offers():
    async def scenario():
        server = _server(max_peers=1)
        async with running_app(server.app) as url, LoopbackClient(url, _faces()):
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/health") as r:
                    assert await r.json() == {"peers": 1, "max_peers": 1}
                async with http.post(f"{url}/offer", json={"sdp": "v=0", "type": "offer"}) as r:
                    assert r.status == 503 and "full" in (await r.json())["error"]
        async with running_app(server.app) as url, aiohttp.ClientSession() as http:
            async with http.post(f"{url}/offer", data="nope") as r:
                assert r.status == 400 and "JSON" in (await r.json())["error"]
            async with http.post(f"{url}/offer", json={"sdp": "v=0", "type": "answer"}) as r:
                assert r.status == 400
            async with http.post(f"{url}/offer", json={"sdp": "garbage", "type": "offer"}) as r:
                assert r.status == 400 and "bad offer" in (await r.json())["error"]
            async with http.post(f"{url}/offer", data="x" * 100_000) as r:
                assert r.status == 413
            async with http.get(f"{url}/") as r:
                page = await r.text()
                assert r.status == 200 and 'id="remote"' in page
            async with http.get(f"{url}/static/app.js") as r:
                assert r.status == 200 and "createDataChannel" in await r.text()
            assert not server.sessions

    asyncio.run(scenario())


def test_server_refuses_zero_peers():
    with pytest.raises(ValueError, match="max_peers"):
        WebRTCServer(lambda: [], max_peers=0)

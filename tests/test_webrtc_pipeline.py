"""aiortc-to-aiortc loopback through the real pipeline (pose → tiny model → paste-back):
edited frames come back and a prompt change mid-stream reaches the video."""
from __future__ import annotations

import asyncio
import warnings

import numpy as np
import pytest

from live3dpe.stream.synthetic import SyntheticFaceSource
from live3dpe.webapp.rtc_client import LoopbackClient
from live3dpe.webapp.server import WebRTCServer, running_app

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def _still_face() -> SyntheticFaceSource:
    # a very slow clock: the face hardly moves, so frames before/after a change are comparable
    return SyntheticFaceSource(320, 240, fps=3000, realtime=False)


def _face_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b).max(axis=-1)


def test_real_pipeline_edits_the_face_and_follows_the_prompt():
    from live3dpe.model.editor import Editor
    from live3dpe.stream.stages import build_stages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random tiny weights
        editor = Editor.load("tiny")
    server = WebRTCServer(lambda: build_stages(editor), max_peers=1)

    async def scenario():
        async with running_app(server.app) as url, LoopbackClient(url, _still_face()) as client:
            await client.wait_stats(lambda s: s["frames_out"] >= 2 and "model" in s["stage_ms"], timeout=120)
            before = await client.next_frame(skip=1, timeout=60)
            sent, _ = client.closest_sent(before)
            diff = _face_diff(before, sent)
            # the face is replaced, the background is pasted back untouched
            assert np.percentile(diff, 99) > 40
            assert np.median(diff) < 8
            changed = diff > 40
            ys, xs = np.nonzero(changed)
            assert 60 < xs.mean() < 260 and 40 < ys.mean() < 200  # where the face is

            # noise floor: a later output made with the same prompt (codec, tracking, slight motion)
            n = client.stats["frames_out"]
            await client.wait_stats(lambda s: s["frames_out"] > n, timeout=120)
            baseline = _face_diff(before, await client.next_frame(skip=3, timeout=60))[changed].mean()
            state = await client.control(prompt="a marble statue")
            after = await client.wait_applied(state["version"], timeout=120)
            moved = _face_diff(before, after)[changed].mean()
            assert moved > 1.5 * baseline + 3, (moved, baseline)
            assert client.stats["faults"] == {}

    asyncio.run(scenario())

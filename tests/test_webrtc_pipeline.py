"""aiortc-to-aiortc loopback through the real pipeline (pose → tiny model → paste-back):
edited frames come back and a prompt change mid-stream reaches the model and the video.

The tiny model has random weights, whose renders barely depend on the prompt, so the prompt
is followed to the model (`PromptSpy`) and to the frames (`applied_version`); pixel-exact
prompt effects are checked with a stand-in stage in test_webrtc_server.py."""
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


class PromptSpy:
    """The real editor, recording the prompts the pipeline asks it to encode."""

    def __init__(self, editor) -> None:
        self._editor = editor
        self.prompts: list[str | None] = []

    def encode_prompt(self, text=None, image=None):
        self.prompts.append(text)
        return self._editor.encode_prompt(text=text, image=image)

    def __getattr__(self, name):
        return getattr(self._editor, name)


def _face_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b).max(axis=-1)


def test_real_pipeline_edits_the_face_and_follows_the_prompt():
    from live3dpe.model.editor import Editor
    from live3dpe.pipeline.stages import build_stages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random tiny weights
        editor = PromptSpy(Editor.load("tiny"))
    server = WebRTCServer(lambda: build_stages(editor), max_peers=1)

    async def scenario():
        async with running_app(server.app) as url, LoopbackClient(url, _still_face()) as client:
            await client.wait_stats(lambda s: s["frames_out"] >= 2 and "render" in s["stage_ms"], timeout=120)
            before = await client.next_frame(skip=1, timeout=60)
            sent, _ = client.closest_sent(before)
            diff = _face_diff(before, sent)
            # the face is replaced, the background is pasted back untouched
            assert np.percentile(diff, 99) > 40
            assert np.median(diff) < 8
            changed = diff > 40
            ys, xs = np.nonzero(changed)
            assert 60 < xs.mean() < 260 and 40 < ys.mean() < 200  # where the face is

            assert editor.prompts == []  # no prompt yet: reconstruction only

            state = await client.control(prompt="a marble statue")
            await client.wait_applied(state["version"], timeout=120)
            assert editor.prompts == ["a marble statue"]  # encoded once, when it changed

            # a visible data-channel change: pass-through returns the camera's own face
            state = await client.control(passthrough=True)
            after = await client.wait_applied(state["version"], timeout=120)
            # only video-codec noise is left (it grows when the CPU is busy), far below the edit
            assert _face_diff(after, client.closest_sent(after)[0])[changed].mean() < min(20.0, diff[changed].mean() / 3)
            assert client.stats["faults"] == {}

    asyncio.run(scenario())

"""The WebRTC demo in headless Chromium with a fake camera playing a generated face clip.

Debian's chromium is driven by Playwright (never `playwright install`). The page connects
to `live3dpe serve` (started with a prompt, which the page's form shows), the test reads
pixels of both <video> elements, checks that the face region comes back edited, changes the
prompt through the page's data channel and checks that it reaches the model and the video
and that the page says "Applied", then turns pass-through on and sees the camera's face
come back, and picks a side view, which switches the page to full view mode. Screenshots
go to $LIVE3DPE_ARTIFACTS (or tmp).
"""
from __future__ import annotations

import asyncio
import base64
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_webrtc_pipeline import PromptSpy

from live3dpe.stream.synthetic import SyntheticFaceSource
from live3dpe.webapp.server import WebRTCServer, running_app

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"),
]
W, H, FPS = 320, 240, 15


def write_face_clip(path: Path, seconds: float = 4.0) -> Path:
    """A y4m clip (what Chromium's fake camera plays) of the astronaut's face moving slowly."""
    # a very slow clock: the face drifts a pixel or two over the clip (Chromium loops it), so
    # the camera and the delayed edited stream can be compared pixel for pixel
    source = SyntheticFaceSource(W, H, fps=FPS * 200, frames=int(seconds * FPS))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(int(seconds * FPS)):
            rgb = source.recv().image
            f.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def artifacts_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("LIVE3DPE_ARTIFACTS") or tmp_path) / "browser"
    out.mkdir(parents=True, exist_ok=True)
    return out


GRAB_JS = """(id) => {
  const v = document.getElementById(id);
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  return c.toDataURL('image/png');
}"""


async def grab(page, video_id: str) -> np.ndarray:
    url = await page.evaluate(GRAB_JS, video_id)
    png = base64.b64decode(url.split(",", 1)[1])
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


async def run_page(url: str, clip: Path, profile: Path, shots: Path, scenario) -> None:
    from playwright.async_api import async_playwright

    args = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]
    async with async_playwright() as p:
        ctx = await p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=args, viewport={"width": 1100, "height": 800}
        )
        try:
            page = ctx.pages[0] if ctx.pages else await ctx.new_page()
            page.on("console", lambda m: print("page:", m.text))
            await page.goto(url)
            await scenario(page, shots)
        finally:
            await ctx.close()


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.shape != b.shape:  # the browser may have scaled the stream down under load
        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    return np.abs(a.astype(np.int16) - b).max(axis=-1)


STATS_JS = "(n) => { const s = window.live3dpe.stats; return s && s.frames_out >= n && 'render' in s.stage_ms"
STATS_JS += " && document.getElementById('remote').videoWidth > 0; }"


async def wait_applied(page, condition: str) -> None:
    """Wait until the server confirms a setting and frames made with it have left the server."""
    await page.wait_for_function(f"window.live3dpe.state && {condition}", timeout=30_000)
    version = await page.evaluate("window.live3dpe.state.version")
    await page.wait_for_function(f"window.live3dpe.stats.applied_version >= {version}", timeout=120_000)


async def wait_text(page, selector: str, text: str) -> None:
    """Wait until an element's text is exactly `text` (the page's status lines)."""
    js = "([sel, text]) => document.querySelector(sel).textContent === text"
    await page.wait_for_function(js, arg=[selector, text], timeout=120_000)


async def edit_scenario(page, shots: Path) -> None:
    """Connect, check the face comes back edited, change the prompt in the page, check it shows."""
    await page.click("#start")
    await page.wait_for_function(STATS_JS, arg=2, timeout=120_000)
    # the form shows the server's settings, and the status line confirms they reached the video
    assert await page.input_value("#prompt") == "golden statue"
    assert await page.input_value("#mode") == "paste"
    await wait_text(page, "#applied", "Applied: golden statue · paste")
    await page.wait_for_timeout(1500)
    local, before = await grab(page, "local"), await grab(page, "remote")
    await page.screenshot(path=str(shots / "webrtc_edited.png"))
    diff = _diff(before, local)
    # the face is replaced; around it the camera picture comes back as it was sent
    assert np.percentile(diff, 99) > 40, np.percentile(diff, 99)
    assert np.median(diff) < 12, np.median(diff)
    face = diff > 40
    ys, xs = np.nonzero(face)
    assert abs(xs.mean() / face.shape[1] - 0.5) < 0.2 and abs(ys.mean() / face.shape[0] - 0.5) < 0.25

    await page.fill("#prompt", "a marble statue")
    await page.click("#apply-prompt")
    await wait_applied(page, "window.live3dpe.state.prompt === 'a marble statue'")
    await wait_text(page, "#applied", "Applied: a marble statue · paste")
    await page.screenshot(path=str(shots / "webrtc_prompt_changed.png"))

    # a reference-image prompt, picked in the page, shrunk and sent over the data channel
    ref = shots / "reference_prompt.png"
    from skimage.data import astronaut

    cv2.imwrite(str(ref), astronaut()[:, :, ::-1])
    await page.set_input_files("#prompt-image", str(ref))
    await wait_applied(page, "window.live3dpe.state.prompt_image === true")

    # a change visible in the pixels: pass-through gives the camera's own face back
    await page.check("#passthrough")
    await wait_applied(page, "window.live3dpe.state.passthrough === true")
    await page.wait_for_timeout(1500)
    plain = _diff(await grab(page, "remote"), await grab(page, "local"))
    await page.screenshot(path=str(shots / "webrtc_passthrough.png"))
    # two lossy VP8 legs blur fine detail, so compare with how different the edit was
    assert plain[face].mean() < min(30.0, diff[face].mean() / 3), (plain[face].mean(), diff[face].mean())

    # a side view shows only in full view mode: picking one in paste mode switches and says so
    await page.select_option("#view", "orbit")
    await page.wait_for_function("window.live3dpe.state.view === 'orbit' && window.live3dpe.state.mode === 'view'", timeout=30_000)
    assert await page.input_value("#mode") == "view"
    assert "switched to full view mode" in await page.text_content("#view-note")
    assert await page.evaluate("window.live3dpe.errors") == []
    stats_text = await page.text_content("#stats")
    assert "fps" in stats_text and "latency" in stats_text


def test_browser_camera_is_edited_and_prompt_changes(tmp_path):
    from live3dpe.model.editor import Editor
    from live3dpe.pipeline.stages import build_stages

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random tiny weights
        editor = PromptSpy(Editor.load("tiny"))
    server = WebRTCServer(lambda: build_stages(editor), max_peers=1, initial_control={"prompt_text": "golden statue"})
    run_browser_scenario(server, tmp_path, edit_scenario)
    # the prompt typed in the page reached the model (random tiny weights barely show it in pixels)
    assert editor.prompts == ["golden statue", "a marble statue", None]  # then the image prompt (no text)


def run_browser_scenario(server: WebRTCServer, tmp_path: Path, scenario) -> None:
    clip = write_face_clip(tmp_path / "clip.y4m")
    shots = artifacts_dir(tmp_path)

    async def main():
        async with running_app(server.app) as url:
            await run_page(url + "/", clip, tmp_path / "profile", shots, scenario)

    asyncio.run(main())

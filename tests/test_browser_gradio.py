"""The gradio UI rendered in headless Chromium: it loads, shows its tabs, and the page asks
nothing of the outside world (no web fonts, no analytics). Screenshot saved as an artifact."""
from __future__ import annotations

import asyncio
import os
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium)"),
]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_renders_offline(tmp_path):
    from playwright.async_api import async_playwright

    from live3dpe.model.editor import Editor
    from live3dpe.webapp.gradio_app import launch
    from live3dpe.webapp.styles import StyleBook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        app, url = launch(StyleBook(Editor.load("tiny")), port=_free_port(), block=False, workdir=tmp_path)
    shots = Path(os.environ.get("LIVE3DPE_ARTIFACTS") or tmp_path) / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    hosts: set[str] = set()

    async def scenario():
        async with async_playwright() as p:
            ctx = await p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS,
                viewport={"width": 1280, "height": 900},
            )
            try:
                page = ctx.pages[0] if ctx.pages else await ctx.new_page()
                page.on("request", lambda req: hosts.add(urlparse(req.url).hostname or req.url.split(":", 1)[0]))
                await page.goto(url, wait_until="load", timeout=90_000)
                for tab in ("Edit", "Customize", "Webcam"):
                    await page.get_by_role("tab", name=tab).wait_for(timeout=30_000)
                await page.get_by_role("button", name="Edit", exact=True).wait_for()
                await page.screenshot(path=str(shots / "gradio_edit_tab.png"), full_page=True)
                await page.get_by_role("tab", name="Customize").click()
                await page.get_by_role("button", name="Adapt").wait_for()
                await page.screenshot(path=str(shots / "gradio_customize_tab.png"), full_page=True)
            finally:
                await ctx.close()

    try:
        asyncio.run(scenario())
    finally:
        app.close()
    assert hosts <= {"127.0.0.1", "data", "blob"}, f"the page contacted {hosts}"

"""Every front end composes its output with the same stage: `live`, `process` and `serve` keep the
mode's output size and honour mirroring on edited and passed-through (no face) frames alike.

Real pose and the bundled model on a synthetic face; every third frame is blank (no face), so
the stream mixes edited and passed-through frames. A white bar on the frames' left edge tells
whether the output was mirrored.
"""
from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from live3dpe.cli import main
from live3dpe.stream.frame import EndOfStream, Frame
from live3dpe.stream.synthetic import SyntheticFaceSource

pytestmark = pytest.mark.timeout(300)
W, H, N = 256, 192, 9
BAR = 6  # px of the white bar on every input frame's left edge


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    faces = SyntheticFaceSource(W, H, fps=10, frames=N)
    out = []
    for i in range(N):
        image = faces.recv().image.copy() if i % 3 else np.full((H, W, 3), 60, np.uint8)
        image[:, :BAR] = 255
        out.append(image)
    return out


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def assert_layout(outputs: list[np.ndarray], width: int, mirrored: bool) -> None:
    assert outputs, "no frames came out"
    assert {o.shape for o in outputs} == {(H, width, 3)}
    right, left = (o[:, -BAR + 1 :].mean() for o in outputs), (o[:, : BAR - 1].mean() for o in outputs)
    if mirrored:  # the input's left edge is now the output's right edge
        assert min(right) > 200
    else:
        assert min(left) > 200


def test_live_side_by_side_mirrored_keeps_its_size_on_every_frame(frames, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), image[..., ::-1])
    out = tmp_path / "live.mp4"
    argv = ["live", "--source", str(folder), "--output", str(out), "--mode", "side-by-side", "--mirror", "--fps", "10"]
    assert main(argv) == 0
    assert_layout(decoded(out), 2 * W, mirrored=True)


def test_process_side_by_side_keeps_its_size_on_every_frame(frames, tmp_path):
    clip = tmp_path / "in.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264", rate=10, options={"crf": "18", "preset": "ultrafast"})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i, image in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(image, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 10)
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), str(out), "--mode", "side-by-side", "--prompt", "zombie"]) == 0
    outputs = decoded(out)
    assert len(outputs) == N
    assert_layout(outputs, 2 * W, mirrored=False)


class Cycle:
    """The frames over and over, as a camera would send them."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.i = frames, 0

    def recv(self) -> Frame:
        if self.i > 400:
            raise EndOfStream
        self.i += 1
        return Frame(self.frames[self.i % len(self.frames)], self.i, Fraction(1, 30))

    def close(self) -> None:
        pass


def test_serve_side_by_side_mirrored_keeps_its_size_on_every_frame(frames):
    from live3dpe.model.editor import Editor
    from live3dpe.pipeline.stages import build_stages
    from live3dpe.webapp.rtc_client import LoopbackClient
    from live3dpe.webapp.server import WebRTCServer, running_app

    editor = Editor.load("default")
    server = WebRTCServer(lambda: build_stages(editor), max_peers=1, initial_control={"mode": "side-by-side", "mirror": True})

    async def scenario() -> list[np.ndarray]:
        async with running_app(server.app) as url, LoopbackClient(url, Cycle(frames)) as client:
            return [await client.next_frame(timeout=60) for _ in range(8)]

    assert_layout(asyncio.run(scenario()), 2 * W, mirrored=True)

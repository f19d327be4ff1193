"""Small media files for the fault suite: clips, a front-indexed MP4 to cut short, images."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from live3dpe.stream.synthetic import SyntheticFaceSource


def write_clip(path: Path, frames: int = 12, width: int = 96, height: int = 64, fps: int = 10, faststart: bool = False) -> Path:
    """An H.264 MP4 of the synthetic face; `faststart` puts the index at the front, as web
    uploads have it, so a file cut short still declares its full frame count."""
    source = SyntheticFaceSource(width, height, fps, frames=frames)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"} if faststart else {}) as c:
        s = c.add_stream("libx264", rate=fps, options={"crf": "30", "preset": "ultrafast", "g": "5"})
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(source.recv().image, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, fps)
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    return path


def truncate(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def write_portrait(path: Path, size: int = 256) -> Path:
    """A synthetic face photo (JPEG or PNG by suffix)."""
    rgb = SyntheticFaceSource(size, size, 30, frames=1).recv().image
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))

"""A synthetic moving face for tests, demos and benchmarks.

It uses the real face in `skimage.data.astronaut()` (MediaPipe detects it), cut out with a
soft elliptical mask and moved/rotated smoothly over a textured background, so the whole
pipeline (detection, cropping, model, paste-back) runs without a webcam.
"""
from __future__ import annotations

import math
import time
from fractions import Fraction

import cv2
import numpy as np

from .frame import EndOfStream, Frame

# head region of the astronaut portrait (512x512): face landmarks span x 179-271, y 71-177
_HEAD_BOX = (110, 0, 330, 250)  # x0, y0, x1, y1


def _head_sprite() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head (RGB float32) and a feathered elliptical alpha mask."""
    from skimage.data import astronaut

    x0, y0, x1, y1 = _HEAD_BOX
    rgb = astronaut()[y0:y1, x0:x1].astype(np.float32)
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = 115.0, 128.0  # ellipse centre inside the box
    r = np.sqrt(((xx - cx) / 100.0) ** 2 + ((yy - cy) / 122.0) ** 2)
    alpha = np.clip((1.0 - r) / 0.15, 0.0, 1.0)
    return rgb, alpha


def _background(width: int, height: int) -> np.ndarray:
    """A smooth colour gradient with soft stripes: not flat, so codecs and blending are exercised."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / width, yy / height
    bg = np.stack(
        [60 + 80 * u + 10 * np.sin(12 * v), 80 + 60 * v + 10 * np.sin(9 * u), 120 - 50 * u + 30 * v], axis=-1
    )
    return np.clip(bg + 0.5, 0, 255).astype(np.uint8)


class SyntheticFaceSource:
    """Frames of a face gliding and tilting over a background.

    `realtime=True` paces `recv()` to `fps` like a camera; otherwise frames come as fast as
    they are asked for (offline use). `frames=None` never ends. `cycle=N` repeats the first N
    images (rendered once, then cached) so benchmarks measure the pipeline, not this source.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        frames: int | None = None,
        realtime: bool = False,
        face_scale: float = 0.55,
        cycle: int | None = None,
    ) -> None:
        if width < 64 or height < 64:
            raise ValueError(f"synthetic source needs at least 64x64, got {width}x{height}")
        self.width, self.height, self.fps, self.frames, self.realtime = width, height, fps, frames, realtime
        self.time_base = Fraction(1, 1) / Fraction(fps).limit_denominator(1001)
        self._sprite, self._alpha = _head_sprite()
        self._bg = _background(width, height)
        # sprite height as a fraction of the frame height
        self._scale = face_scale * height / self._sprite.shape[0]
        self._index = 0
        self._t0: float | None = None
        self.cycle = cycle
        self._cache: dict[int, np.ndarray] = {}

    def pose_at(self, t: float) -> tuple[float, float, float]:
        """Sprite centre (x, y in pixels) and in-plane rotation (degrees) at time t: a slow Lissajous path."""
        cx = self.width / 2 + 0.18 * self.width * math.sin(2 * math.pi * t / 4.0)
        cy = self.height / 2 + 0.08 * self.height * math.sin(2 * math.pi * t / 3.0)
        angle = 12.0 * math.sin(2 * math.pi * t / 5.0)
        return cx, cy, angle

    def render(self, t: float) -> np.ndarray:
        """The frame at time t (HxWx3 uint8 RGB). Only the sprite's bounding box is warped and blended."""
        cx, cy, angle = self.pose_at(t)
        h, w = self._sprite.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, self._scale)
        m[:, 2] += (cx - w / 2, cy - h / 2)
        x0, y0, x1, y1 = self.face_box(t)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.width), min(y1, self.height)
        out = self._bg.copy()
        if x1 <= x0 or y1 <= y0:
            return out
        m[:, 2] -= (x0, y0)  # warp straight into the region of interest
        size = (x1 - x0, y1 - y0)
        sprite = cv2.warpAffine(self._sprite, m, size, flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(self._alpha, m, size, flags=cv2.INTER_LINEAR)[..., None]
        roi = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = (roi + alpha * (sprite - roi) + 0.5).astype(np.uint8)
        return out

    def face_box(self, t: float, margin: float = 0.0) -> tuple[int, int, int, int]:
        """Bounding box (x0, y0, x1, y1) of the head sprite at time t, grown by `margin` of its size."""
        cx, cy, _ = self.pose_at(t)
        h, w = self._sprite.shape[:2]
        half = 0.5 * max(h, w) * self._scale * math.sqrt(2) * (1 + margin)
        return int(cx - half), int(cy - half), int(cx + half), int(cy + half)

    def prerender(self) -> None:
        """Render the whole `cycle` now, so that `recv()` costs no more than a camera read."""
        if self.cycle is None:
            raise ValueError("prerender needs a cycle length")
        for k in range(self.cycle):
            if k not in self._cache:
                self._cache[k] = self.render(k * float(self.time_base))

    def recv(self) -> Frame:
        if self.frames is not None and self._index >= self.frames:
            raise EndOfStream
        if self.realtime:
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            wait = self._t0 + self._index / self.fps - now
            if wait > 0:
                time.sleep(wait)
        i = self._index
        self._index += 1
        if self.cycle is None:
            return Frame(self.render(i * float(self.time_base)), i, self.time_base)
        k = i % self.cycle
        if k not in self._cache:
            self._cache[k] = self.render(k * float(self.time_base))
        return Frame(self._cache[k].copy(), i, self.time_base)

    def close(self) -> None:
        pass

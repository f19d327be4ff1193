"""Final touches applied just before the sink: mirror and the stats overlay."""
from __future__ import annotations

import cv2
import numpy as np

from .engine import Work
from .stats import Stats


def draw_overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Text lines in the top-left corner on a dark band, readable on any background."""
    out = image.copy()
    scale = max(0.4, image.shape[0] / 1000)
    step = int(22 * scale / 0.5)
    width = max((cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for t in lines), default=0)
    cv2.rectangle(out, (0, 0), (width + 12, step * len(lines) + 8), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (6, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def output_size(mode: str, width: int, height: int) -> tuple[int, int]:
    """Size of the output frames for a mode: side-by-side is twice as wide."""
    return (2 * width, height) if mode == "side-by-side" else (width, height)


class Decorator:
    """Engine `postprocess` hook: keeps the output size constant, mirrors for selfie view and
    overlays FPS and ms per stage when enabled.

    A passed-through frame (no face, a failed stage) is doubled in side-by-side mode so sinks
    such as a virtual camera always get the same size."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def __call__(self, image: np.ndarray, work: Work) -> np.ndarray:
        c = work.control
        if c.mode == "side-by-side" and image.shape == work.frame.image.shape:
            image = np.hstack([image, image])
        if c.mirror:
            image = image[:, ::-1]
        if c.overlay:
            image = draw_overlay(np.ascontiguousarray(image), self.stats.overlay_lines())
        return image

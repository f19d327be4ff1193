"""The unit that flows from a source through the engine to a sink."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


class EndOfStream(Exception):
    """Raised by `Source.recv()` when there are no more frames (like aiortc's MediaStreamError)."""


@dataclass
class Frame:
    """One RGB video frame. `pts * time_base` is its presentation time in seconds;
    `captured_ns` (monotonic) is when it entered the process, for latency measurement."""

    image: np.ndarray  # H x W x 3, uint8, RGB
    pts: int
    time_base: Fraction
    captured_ns: int = field(default_factory=time.monotonic_ns)

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            desc = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"frame image must be an HxWx3 uint8 RGB array, got {desc}")
        if img.shape[0] < 2 or img.shape[1] < 2:
            raise ValueError(f"frame image is too small: {img.shape[1]}x{img.shape[0]}")

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.image.shape[1], self.image.shape[0]

    def with_image(self, image: np.ndarray) -> Frame:
        """Same timing, new pixels: keeps pts and capture time travelling with the content."""
        return Frame(image, self.pts, self.time_base, self.captured_ns)

"""The compositor: the one place the output frame is assembled, for every front end.

It runs on every frame (an `always` stage), edited or not, so mode, mirror and overlay look the
same on passed-through frames and the output size never changes within a stream:

    paste         the edited face blended back into the frame (inside the face contour, and
                  for a model that reproduces its input, wherever the edit changed the head
                  around it; the frame itself where the head turns beyond the model's range)
    view          the re-rendered head letterboxed to the frame size
    side-by-side  input | paste (input | input when there is no edit), twice as wide
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from .work import FaceWork

if TYPE_CHECKING:
    from live3dpe.pose.estimator import FaceObservation
    from live3dpe.stream.stats import Stats


def output_size(mode: str, width: int, height: int) -> tuple[int, int]:
    """Size of the output frames for a mode: side-by-side is twice as wide."""
    return (2 * width, height) if mode == "side-by-side" else (width, height)


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fit a square image into width x height (black bars), keeping the output size constant."""
    side = min(width, height)
    face = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR if side > image.shape[0] else cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - side) // 2, (width - side) // 2
    out[y : y + side, x : x + side] = face
    return out


def text_scale(height: int) -> float:
    """OpenCV font scale for text readable on a frame `height` px tall, also when the frame is
    shown shrunk in a window: about 1/30 of the height (16 px on 480, 24 px on 720)."""
    return max(0.45, height / 900)


def draw_overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Text lines in the top-left corner on a dark band, readable on any background."""
    out = np.ascontiguousarray(image).copy()
    scale = text_scale(image.shape[0])
    thickness = max(1, round(scale * 1.5))
    step = int(30 * scale) + 4
    width = max((cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0] for t in lines), default=0)
    cv2.rectangle(out, (0, 0), (width + 12, step * len(lines) + 8), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (6, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


# How far above the face oval an edit is pasted where it changed the image, as a fraction of the
# face size: the upper forehead up to the hairline, and the temples (`pose.paste.paste_face`).
CHANGED_WITHIN = 0.2


class Compose:
    """Makes `work.output` from the frame and the edited face (if any) under the frame's settings.
    `reproduces_input`: the model's image is the input crop wherever the edit leaves it alone
    (`ModelRunner.reproduces_input`), so what it changed around the face is pasted too."""

    def __init__(self, stats: Stats | None = None, reproduces_input: bool = False) -> None:
        self.stats = stats  # the overlay's FPS and stage timings
        self.reproduces_input = reproduces_input

    def __call__(self, work: FaceWork) -> None:
        frame, c = work.frame.image, work.control
        if c.mode == "view" and work.edited:
            image = letterbox(work.face, *work.frame.size)
        else:
            shown = frame
            if work.edited:
                shown = paste(frame, work.face, work.obs, match_colour=not c.has_prompt, reproduces_input=self.reproduces_input)
            image = np.hstack([frame, shown]) if c.mode == "side-by-side" else shown
        if c.mirror:
            image = image[:, ::-1]
        if c.overlay and self.stats is not None:
            image = draw_overlay(image, self.stats.overlay_lines())
        work.output = image


def paste(frame: np.ndarray, face: np.ndarray, obs: FaceObservation, match_colour: bool = True, reproduces_input: bool = False) -> np.ndarray:
    """The edited face (aligned like `obs`'s crop, any size) blended back into the frame inside
    the observed face contour and faded out where the head turns beyond the model's range
    (`pose.paste.paste_face`). `match_colour`: pull the render's exposure and white balance to
    the frame's at the seam; only for reconstructions, since an edit recolours the face on purpose.
    `reproduces_input`: also paste what the edit changed up to `CHANGED_WITHIN` beyond the oval."""
    from live3dpe.pose.paste import paste_face

    reach = CHANGED_WITHIN if reproduces_input else 0.0
    return paste_face(frame, face, obs, max_gain=1.25 if match_colour else 1.0, changed_within=reach)

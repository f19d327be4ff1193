"""One face followed through a video by a single-face FaceMesh, found in windows if small.

Why windows: mediapipe's detector sees its whole input shrunk to 128 px, so a face under
about a third of a 1280x720 frame's height is never acquired. While searching, the tracker
cycles through the full frame, squares of side min(W, H) and tiles of half that side
(centre first), one per call, so a search frame costs one detector pass.

Why the window stays put: in video mode mediapipe crops each frame where the previous
frame's landmarks were, in coordinates normalised to its input, and its landmark model pulls
towards that crop. A window that moves with the face therefore drags the landmarks along
(measured: a runaway drift of ~15 px a frame). So a face is tracked in the window it was
found in; when it wanders off the window's centre the window is re-centred once and
mediapipe's tracking state is reset (~4 ms, plus one detector pass), which keeps a small
face followed across a wide frame. A face found in the full frame is tracked there.
"""
from __future__ import annotations

import numpy as np

from live3dpe.pose.landmarks import FaceMeshDetector

Window = tuple[int, int, int, int]  # x0, y0, x1, y1 (frame px, exclusive end)
MAX_FACE_IN_WINDOW = 0.6  # a face larger than this fraction of a window: search again
RECENTRE_OFFSET = 0.2  # re-centre once the face is this fraction of the window off centre


def place(cx: float, cy: float, w: int, h: int, width: int, height: int) -> Window:
    """A w x h window centred near (cx, cy), shifted to lie inside the frame."""
    x0 = int(np.clip(round(cx - w / 2), 0, width - w))
    y0 = int(np.clip(round(cy - h / 2), 0, height - h))
    return (x0, y0, x0 + w, y0 + h)


def _starts(length: int, side: int) -> np.ndarray:
    """Window starts along one axis: at most half a side apart, an odd count (one centred)."""
    n = int(np.ceil(2 * (length - side) / side)) + 1
    return np.unique(np.linspace(0, length - side, n + 1 - n % 2).round().astype(int))


def search_windows(width: int, height: int) -> list[Window]:
    """The full frame, then squares of side min(W, H) and of half that side (tiles with half
    overlap), each group ordered from the frame's centre outwards."""
    full = (0, 0, width, height)
    out = [full]
    for side in (min(width, height), min(width, height) // 2):
        if side < 64:
            break
        xs, ys = _starts(width, side), _starts(height, side)
        tiles = [(int(x), int(y), int(x) + side, int(y) + side) for y in ys for x in xs]
        tiles.sort(key=lambda t: np.hypot((t[0] + t[2] - width) / 2, (t[1] + t[3] - height) / 2))
        out += [t for t in tiles if t not in out]
    return out


class WindowedFaceTracker:
    """rgb frame -> float32[478, 3] landmarks (frame px) of the followed face, or None.

    `target(box)` makes the next call look in a window around a chosen face (e.g. the most
    salient of a multi-face scan) instead of the search cycle; `reset()` forgets the face.
    """

    def __init__(self, refine_landmarks: bool = False) -> None:
        self._mesh = FaceMeshDetector(max_faces=1, static_image=False, refine_landmarks=refine_landmarks)
        self._window: Window | None = None  # where to look next; None: the search cycle
        self._tracked_in: Window | None = None  # the window mediapipe's tracking state refers to
        self._search = 0
        self._size: tuple[int, int] | None = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        H, W = rgb.shape[:2]
        if (W, H) != self._size:  # a new video size: windows and tracking state are void
            if self._size is not None:
                self.reset()
            self._size = (W, H)
        window = self._window
        if window is None:
            windows = search_windows(W, H)
            window = windows[self._search % len(windows)]
            self._search += 1
        if self._tracked_in is not None and window != self._tracked_in:
            self._mesh.reset()  # its tracked crop is in another window's coordinates
        x0, y0, x1, y1 = window
        full = window == (0, 0, W, H)
        faces = self._mesh(rgb if full else np.ascontiguousarray(rgb[y0:y1, x0:x1]))
        if len(faces) == 0:
            if self._tracked_in is not None:
                self._search = 0  # lost: look in the full frame first
            self._window = self._tracked_in = None
            return None
        lm = faces[0]
        lm[:, 0] += x0
        lm[:, 1] += y0
        self._tracked_in = self._window = window
        if not full:
            self._window = self._next_window(lm, window, W, H)
        return lm

    def _next_window(self, lm: np.ndarray, window: Window, width: int, height: int) -> Window | None:
        """The same window while the face is near its centre, else one re-centred on it;
        None (search from the full frame) when the face has outgrown it."""
        x0, y0, x1, y1 = window
        lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
        if float(max(hi - lo)) > MAX_FACE_IN_WINDOW * min(x1 - x0, y1 - y0):
            self._search = 0
            return None
        cx, cy = (lo + hi) / 2
        if max(abs(cx - (x0 + x1) / 2) / (x1 - x0), abs(cy - (y0 + y1) / 2) / (y1 - y0)) < RECENTRE_OFFSET:
            return window
        return place(cx, cy, x1 - x0, y1 - y0, width, height)

    def target(self, box: tuple[float, float, float, float], width: int, height: int) -> None:
        """Look next in a window around `box` (x0, y0, x1, y1 frame px): a square of four box
        sizes, at least half and at most the frame's smaller side."""
        side = min(width, height)
        size = int(np.clip(4 * max(box[2] - box[0], box[3] - box[1]), side // 2, side))
        self._window = place((box[0] + box[2]) / 2, (box[1] + box[3]) / 2, size, size, width, height)

    @property
    def following(self) -> bool:
        """Whether the last call found the face."""
        return self._tracked_in is not None

    def reset(self) -> None:
        self._window = self._tracked_in = None
        self._search = 0
        self._mesh.reset()

    def close(self) -> None:
        self._mesh.close()

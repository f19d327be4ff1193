"""The windowed single-face tracker: search windows, following, small faces in wide frames."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from live3dpe.pose.tracker import WindowedFaceTracker, place, search_windows


def scene(width: int, height: int, head_fraction: float, centre: tuple[int, int]) -> np.ndarray:
    """The astronaut's head, `head_fraction` of the frame height tall (its face about a third
    of that), on a flat background."""
    head = astronaut()[0:300, 80:360]
    h = int(height * head_fraction)
    head = cv2.resize(head, (h * head.shape[1] // head.shape[0], h), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 90, np.uint8)
    x, y = centre[0] - head.shape[1] // 2, centre[1] - h // 2
    frame[y : y + h, x : x + head.shape[1]] = head
    return frame


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (480, 640), (512, 512)])
def test_search_windows_start_full_and_cover_the_frame(size):
    W, H = size
    windows = search_windows(W, H)
    assert windows[0] == (0, 0, W, H) and len(set(windows)) == len(windows)
    cover = np.zeros((H, W), bool)
    for x0, y0, x1, y1 in windows[1:] or windows:
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H and x1 - x0 == y1 - y0
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    smallest = min(x1 - x0 for x0, _, x1, _ in windows)
    assert smallest == min(W, H) // 2  # tiles of half the smaller side


def test_place_keeps_the_window_inside_the_frame():
    assert place(10, 10, 100, 100, 640, 480) == (0, 0, 100, 100)
    assert place(630, 470, 100, 100, 640, 480) == (540, 380, 640, 480)
    assert place(320, 240, 100, 100, 640, 480) == (270, 190, 370, 290)


def test_small_face_in_a_wide_frame_is_acquired_and_followed():
    """A face mediapipe's detector misses in the full 1280x720 frame is found in a tile, then
    followed (same-size window) while it moves."""
    tracker = WindowedFaceTracker()
    found = []
    try:
        for i in range(40):
            frame = scene(1280, 720, 0.25, (640 + 4 * i, 360 + i))
            lm = tracker(frame)
            found.append(lm is not None)
            if lm is not None:
                nose = lm[4, :2]
                assert 560 + 4 * i < nose[0] < 720 + 4 * i and 280 + i < nose[1] < 440 + i
    finally:
        tracker.close()
    first = found.index(True)
    assert first < len(search_windows(1280, 720))
    assert all(found[first:])  # never lost once acquired


def test_tracker_loses_an_absent_face_and_reacquires_it():
    tracker = WindowedFaceTracker()
    try:
        face = scene(640, 480, 0.6, (320, 240))
        assert any(tracker(face) is not None for _ in range(3))
        assert tracker.following
        assert tracker(np.full_like(face, 90)) is None and not tracker.following
        assert tracker(face) is not None  # the full frame is searched first again
    finally:
        tracker.close()


def test_a_new_frame_size_restarts_the_search():
    tracker = WindowedFaceTracker()
    try:
        wide = scene(1280, 720, 0.25, (640, 360))
        assert any(tracker(wide) is not None for _ in range(len(search_windows(1280, 720))))
        small = np.ascontiguousarray(wide[200:520, 480:800])  # 320x320, the face inside
        assert any(tracker(small) is not None for _ in range(3))
        assert tracker(np.zeros((1, 1, 3), np.uint8)) is None
    finally:
        tracker.close()

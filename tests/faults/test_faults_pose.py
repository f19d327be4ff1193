"""Fault injection on face detection: tiny and false faces must not be edited (defect 4)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.data import astronaut, rocket

from live3dpe.pose import FacePoseEstimator, observe
from live3dpe.pose.estimator import MIN_FACE_PX, implausible
from live3dpe.pose.headpose import project_head

pytestmark = pytest.mark.timeout(120)


def _observation(side_px: float, roll_deg: float = 0.0):
    """The observation of a canonical head whose landmark box is about `side_px` wide, rolled in the image."""
    r = np.radians(-roll_deg)
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    R = Rz @ np.diag([1.0, -1.0, -1.0])
    lm = project_head(R[None], np.array([[0.0, -3.0, 60.0]]), 512.0, (255.5, 255.5))[0]
    centre = lm[:, :2].mean(0)
    side = float(np.ptp(lm[:, :2], axis=0).max())
    lm[:, :3] *= side_px / side
    lm[:, :2] += centre - lm[:, :2].mean(0)
    return observe(lm, (512, 512))


@pytest.mark.parametrize(
    ("side", "roll", "rejected"),
    [(12, 0, True), (MIN_FACE_PX - 2, 5, True), (30, -47, True), (30, 10, False), (120, -47, False), (60, 0, False)],
)
def test_implausible_detections_are_tiny_or_small_and_strongly_rolled(side, roll, rejected):
    obs = _observation(side, roll)
    assert abs(obs.roll - roll) < 3
    assert bool(implausible(obs)) is rejected


def test_false_face_on_a_tiny_video_is_not_accepted():
    """Defect 4: on a tiny video a low-resolution false detection was accepted and the edit pasted over it.
    mediapipe finds a ~10 px "face" on the rocket photo at 256x170; there is no face."""
    frame = np.ascontiguousarray(cv2.resize(rocket(), (256, 170), interpolation=cv2.INTER_AREA))
    with FacePoseEstimator(max_faces=4, static_image=False) as est:
        assert all(est(frame) is None for _ in range(8))


def test_face_too_small_to_edit_counts_as_no_face_in_both_modes():
    small = np.ascontiguousarray(cv2.resize(astronaut(), (92, 92), interpolation=cv2.INTER_AREA))  # face ~17 px
    large = np.ascontiguousarray(cv2.resize(astronaut(), (160, 160), interpolation=cv2.INTER_AREA))  # face ~30 px
    for static in (True, False):
        with FacePoseEstimator(max_faces=1 if static else 4, static_image=static) as est:
            assert all(est(small) is None for _ in range(3))
            found = [est(large) for _ in range(3)]
            assert found[-1] is not None and max(found[-1].bbox[2] - found[-1].bbox[0], found[-1].bbox[3] - found[-1].bbox[1]) >= MIN_FACE_PX

"""FaceMesh landmarks: the fast proto reader and the iris filled in without refinement."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.data import astronaut

from live3dpe.pose.landmarks import NUM_LANDMARKS, FaceMeshDetector, fill_iris, parse_landmarks


@pytest.fixture(scope="module")
def both():
    """The astronaut's landmarks with and without the iris model."""
    with_iris = FaceMeshDetector(max_faces=1, static_image=True, refine_landmarks=True)
    without = FaceMeshDetector(max_faces=1, static_image=True, refine_landmarks=False)
    try:
        yield with_iris(astronaut())[0], without(astronaut())[0]
    finally:
        with_iris.close()
        without.close()


def test_both_modes_give_478_points_and_agree_on_the_mesh(both):
    refined, plain = both
    assert refined.shape == plain.shape == (NUM_LANDMARKS, 3)
    eye_width = np.linalg.norm(refined[33, :2] - refined[133, :2])
    assert np.abs(refined[:468, :2] - plain[:468, :2]).mean() < 0.1 * eye_width


def test_filled_iris_lies_where_the_iris_model_puts_it(both):
    refined, plain = both
    eye_width = np.linalg.norm(refined[33, :2] - refined[133, :2])
    # centres and ring points within a quarter of an eye width (the real iris also follows gaze)
    assert np.abs(plain[468:, :2] - refined[468:, :2]).max() < 0.25 * eye_width
    filled = fill_iris(refined[:468])
    np.testing.assert_allclose(filled[:468], refined[:468])
    ring = filled[469:473, :2] - filled[468, :2]
    assert ring[0, 0] > 0 and ring[1, 1] < 0 and ring[2, 0] < 0 and ring[3, 1] > 0  # right, up, left, down


def test_parse_reads_the_serialized_landmarks_and_falls_back():
    from mediapipe.framework.formats import landmark_pb2

    pts = np.random.default_rng(0).uniform(-1, 1, (468, 3)).astype(np.float32)
    pts[5] = 0.0  # zeros still serialized (proto2 presence)
    msg = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in pts:
        msg.landmark.add(x=x, y=y, z=z)
    np.testing.assert_array_equal(parse_landmarks(msg), pts)
    msg.landmark[3].visibility = 0.5  # a longer record: the per-attribute path
    np.testing.assert_array_equal(parse_landmarks(msg), pts)

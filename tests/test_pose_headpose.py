"""Head pose: the fit recovers known poses, and the camera lands in the model's convention."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from live3dpe.model.cameras import Camera, yaw_pitch_cam2world
from live3dpe.pose.headpose import fit_head_pose, head_pose_to_camera, project_head, rotate_z_onto
from live3dpe.pose.procrustes import weighted_procrustes

FOCAL, CENTER = 640.0, (320.0, 240.0)


def _posed(yaw_deg, pitch_deg, roll_deg, translation):
    """Head rotations seen by a camera at (yaw, pitch) of the model orbit, rolled in the image
    (counter-clockwise for roll > 0), and turned to look at a head at `translation`."""
    c2w = yaw_pitch_cam2world(torch.tensor(np.radians(yaw_deg)), torch.tensor(np.radians(pitch_deg)), 1.0, pivot=(0, 0, 0))
    w2c = c2w[:, :3, :3].transpose(1, 2).double().numpy()
    r = -np.radians(roll_deg)  # screen y points down: counter-clockwise on screen is -z rotation
    Rz = np.zeros((len(r), 3, 3))
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = np.cos(r), -np.sin(r), np.sin(r), np.cos(r), 1
    n = translation / np.linalg.norm(translation, axis=-1, keepdims=True)
    return rotate_z_onto(n) @ Rz @ w2c


def _random_poses(n, seed=0):
    rng = np.random.default_rng(seed)
    angles = rng.uniform([-45, -30, -20], [45, 30, 20], (n, 3))
    t = np.stack([rng.uniform(-10, 10, n), rng.uniform(-6, 6, n), rng.uniform(35, 80, n)], -1)
    return angles, t, _posed(*angles.T, t)


def test_procrustes_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(4, 30, 3))
    q, _ = np.linalg.qr(rng.normal(size=(4, 3, 3)))
    q *= np.sign(np.linalg.det(q))[:, None, None]
    s, t = rng.uniform(0.5, 2, 4), rng.normal(size=(4, 3))
    dst = s[:, None, None] * np.einsum("bij,bnj->bni", q, src) + t[:, None]
    s2, R2, t2 = weighted_procrustes(src, dst, rng.uniform(0.1, 1, 30))
    np.testing.assert_allclose(s2, s, rtol=1e-9)
    np.testing.assert_allclose(R2, q, atol=1e-9)
    np.testing.assert_allclose(t2, t, atol=1e-9)


def test_procrustes_rejects_bad_input():
    with pytest.raises(ValueError, match="B, N, 3"):
        weighted_procrustes(np.zeros((2, 5, 3)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="zero"):
        weighted_procrustes(np.ones((1, 5, 3)), np.ones((1, 5, 3)), np.zeros(5))


def test_camera_conversion_is_exact_on_known_poses():
    angles, t, R = _random_poses(100)
    label, yaw, pitch, roll = head_pose_to_camera(R, t)
    np.testing.assert_allclose(np.degrees(yaw), angles[:, 0], atol=1e-4)
    np.testing.assert_allclose(np.degrees(pitch), angles[:, 1], atol=1e-4)
    np.testing.assert_allclose(np.degrees(roll), angles[:, 2], atol=1e-4)
    ref = Camera.from_yaw_pitch(torch.tensor(yaw, dtype=torch.float32), torch.tensor(pitch, dtype=torch.float32)).label
    assert label.dtype == np.float32 and label.shape == (100, 25)
    np.testing.assert_allclose(label, ref.numpy(), atol=1e-5)


def test_frontal_head_gives_the_frontal_camera():
    R = np.diag([1.0, -1.0, -1.0])[None]  # canonical y up / z out -> camera y down / z forward
    label, yaw, pitch, roll = head_pose_to_camera(R, np.array([[0.0, 0.0, 60.0]]))
    np.testing.assert_allclose(label, Camera.frontal().label.numpy(), atol=1e-6)
    assert abs(yaw[0]) < 1e-9 and abs(pitch[0]) < 1e-9 and abs(roll[0]) < 1e-9


@pytest.mark.parametrize("noise_px", [0.0, 1.0, 2.0])
def test_fit_recovers_ground_truth_within_a_degree(noise_px):
    angles, t, R = _random_poses(200, seed=2)
    lm = project_head(R, t, FOCAL, CENTER)
    lm = lm + np.random.default_rng(3).normal(0, noise_px, lm.shape)
    pose = fit_head_pose(lm, FOCAL, CENTER)
    _, yaw, pitch, roll = head_pose_to_camera(pose.rotation, pose.translation)
    err = np.abs(np.degrees(np.stack([yaw, pitch, roll], -1)) - angles)
    assert err.mean(0).max() < 1.0, err.mean(0)
    assert np.abs(pose.translation - t).mean() < 1.0  # cm


def test_perspective_refinement_removes_the_weak_perspective_bias():
    angles, t, R = _random_poses(100, seed=4)
    lm = project_head(R, t, FOCAL, CENTER)
    errs = []
    for iterations in (0, 1):
        pose = fit_head_pose(lm, FOCAL, CENTER, iterations=iterations)
        _, yaw, pitch, _ = head_pose_to_camera(pose.rotation, pose.translation)
        errs.append(np.abs(np.degrees(np.stack([yaw, pitch], -1)) - angles[:, :2]).mean())
    assert errs[1] < errs[0] / 5


def test_residual_flags_non_face_landmarks():
    angles, t, R = _random_poses(8, seed=5)
    lm = project_head(R, t, FOCAL, CENTER)
    scrambled = lm[:, np.random.default_rng(6).permutation(lm.shape[1])]
    good = fit_head_pose(lm, FOCAL, CENTER).residual
    bad = fit_head_pose(scrambled, FOCAL, CENTER).residual
    assert good.max() < 0.1 < bad.min()


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="landmarks"):
        fit_head_pose(np.zeros((1, 10, 3)), FOCAL, CENTER)
    with pytest.raises(ValueError, match="front of the camera"):
        head_pose_to_camera(np.eye(3)[None], np.array([[0.0, 0.0, -5.0]]))


def test_numpy_orbit_label_matches_the_camera_module():
    from live3dpe.pose.headpose import orbit_label

    yaw = np.array([0.0, 0.4, -0.7, 1.3])
    pitch = np.array([0.0, -0.2, 0.3, -0.5])
    expected = Camera.from_yaw_pitch(torch.from_numpy(yaw), torch.from_numpy(pitch)).label.numpy()
    np.testing.assert_allclose(orbit_label(yaw, pitch), expected, atol=1e-6)
    assert orbit_label(0.1, 0.2).shape == (1, 25)


def test_written_out_cross_and_determinant_match_numpy():
    from live3dpe.pose.procrustes import cross3, det3

    rng = np.random.default_rng(1)
    a, b, m = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3, 3))
    np.testing.assert_allclose(cross3(a, b), np.cross(a, b), atol=1e-12)
    np.testing.assert_allclose(det3(m), np.linalg.det(m), atol=1e-12)

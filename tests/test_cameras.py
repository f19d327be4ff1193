import math

import numpy as np
import pytest
import torch

from live3dpe.model import cameras as C


def test_frontal_official_and_exact_agree_with_closed_form():
    expected = torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]], dtype=torch.float32)
    # The official sampler's pitch quirk: v = pi/2 is level, so frontal is the same in both.
    torch.testing.assert_close(C.official_lookat(math.pi / 2, math.pi / 2)[0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(C.yaw_pitch_cam2world(0.0, 0.0)[0], expected, atol=1e-6, rtol=0)


def test_official_intrinsics_factor():
    K = C.intrinsics_from_fov(18.837)
    assert K[0, 0, 0].item() == pytest.approx(4.263391, abs=1e-6)
    assert C.fov_from_intrinsics(K).item() == pytest.approx(18.837, abs=1e-4)
    # the true fov is narrower than the nominal one because of the extra sqrt(2)
    assert C.true_fov_deg(K).item() == pytest.approx(math.degrees(2 * math.atan(0.5 / 4.263391)), abs=1e-5)


@pytest.mark.parametrize("yaw,pitch", [(0.3, 0.0), (-0.5, 0.2), (0.0, -0.25), (0.7, 0.4)])
def test_exact_yaw_pitch_roundtrip_and_looks_at_pivot(yaw, pitch):
    label = C.make_label(C.yaw_pitch_cam2world(yaw, pitch), C.intrinsics_from_fov(18.837))
    y, p = C.camera_yaw_pitch(label)
    assert y.item() == pytest.approx(yaw, abs=1e-5)
    assert p.item() == pytest.approx(pitch, abs=1e-5)
    # the pivot projects to the image centre, and lies in front of the camera
    uv, z = C.project_points(label, torch.tensor([[[0.0, 0.0, 0.2]]]))
    torch.testing.assert_close(uv, torch.full((1, 1, 2), 0.5), atol=1e-5, rtol=0)
    assert z.item() > 0


def test_yaw_moves_camera_to_plus_x_and_pitch_raises_it():
    c2w = C.yaw_pitch_cam2world(torch.tensor([0.3, 0.0]), torch.tensor([0.0, 0.3]))
    assert c2w[0, 0, 3] > 0.5
    assert c2w[1, 1, 3] > 0.5


def test_labels_and_rays_match_official_vectors(conformance):
    vec = "vec_c_camera_rays.npz"
    h = torch.tensor(conformance.kept(vec, "horizontal_mean"), dtype=torch.float32)
    v = torch.tensor(conformance.kept(vec, "vertical_mean"), dtype=torch.float32)
    labels = C.make_label(C.official_lookat(h, v), C.intrinsics_from_fov(18.837, 3))
    np.testing.assert_allclose(labels.numpy(), conformance.kept(vec, "labels"), atol=2e-6, rtol=0)
    origins, dirs = C.generate_rays(torch.tensor(conformance.kept(vec, "labels")), 128)
    conformance.check(vec, "ray_origins", origins, atol=2e-6)
    conformance.check(vec, "ray_dirs", dirs, atol=2e-6)


def test_rays_hit_projected_pixel():
    """A point along ray m projects back onto pixel m's centre."""
    label = C.Camera.from_yaw_pitch(0.4, -0.1).label
    o, d = C.generate_rays(label, 8)
    m = 8 * 3 + 5
    p = o[:, m] + 2.6 * d[:, m]
    uv, _ = C.project_points(label, p[:, None])
    torch.testing.assert_close(uv[0, 0], torch.tensor([(5 + 0.5) / 8, (3 + 0.5) / 8]), atol=1e-5, rtol=0)


def test_orbit_path_is_closed_and_shaped():
    path = C.orbit_path(24)
    assert path.shape == (24, 25)
    yaw, pitch = C.camera_yaw_pitch(path)
    assert yaw.abs().max().item() == pytest.approx(math.radians(30), abs=1e-2)


def test_bad_label_shape_names_the_problem():
    with pytest.raises(ValueError, match=r"\[B, 25\]"):
        C.Camera(torch.zeros(3, 16))

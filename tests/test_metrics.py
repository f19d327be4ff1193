import numpy as np
import pytest
import torch

from live3dpe.evaluation import metrics as M
from live3dpe.model.cameras import Camera, generate_rays


def _texture(x, y):
    return np.stack([0.5 + 0.4 * np.sin(9 * x) * np.cos(7 * y), 0.5 + 0.4 * np.cos(11 * y), 0.5 + 0.3 * np.sin(5 * (x + y))], -1)


def _render_plane(label, res=96):
    """Analytic scene: the textured plane z = 0. Returns image and depth along the ray."""
    o, d = generate_rays(torch.as_tensor(label).reshape(1, 25).double(), res)
    t = (-o[0, :, 2] / d[0, :, 2]).numpy()
    p = o[0].numpy() + d[0].numpy() * t[:, None]
    return _texture(p[:, 0], p[:, 1]).reshape(res, res, 3), t.reshape(res, res)


def test_psnr_ssim_identical_and_known_noise():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32, 3))
    assert M.psnr(a, a) == float("inf")
    assert M.ssim(a, a) == pytest.approx(1.0)
    assert M.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-6)
    assert M.ssim(a, a + rng.normal(0, 0.2, a.shape)) < 0.9


def test_psnr_mask_only_counts_inside():
    a = np.zeros((8, 8, 3))
    b = a.copy()
    b[:4] = 1.0
    mask = np.zeros((8, 8), bool)
    mask[4:] = True
    assert M.psnr(a, b, mask) == float("inf")
    with pytest.raises(ValueError, match="mask shape"):
        M.psnr(a, b, np.ones((4, 4), bool))


def test_depth_error_known_offset():
    gt = np.full((4, 4), 2.0)
    err = M.depth_error(gt + 0.2, gt)
    assert err["abs"] == pytest.approx(0.2)
    assert err["rel"] == pytest.approx(0.1)


def test_reprojection_consistency_known_warp():
    la = Camera.from_yaw_pitch(0.0, 0.0).label[0].numpy()
    lb = Camera.from_yaw_pitch(0.25, 0.1).label[0].numpy()
    img_a, depth_a = _render_plane(la)
    img_b, _ = _render_plane(lb)
    good = M.reprojection_consistency(img_a, depth_a, la, img_b, lb)
    wrong = M.reprojection_consistency(img_a, depth_a * 1.05, la, img_b, lb)
    assert good > 30
    assert wrong < good - 8


def test_flow_warping_error_shift_vs_flicker():
    rng = np.random.default_rng(1)
    base = (_texture(*np.meshgrid(np.linspace(0, 3, 140), np.linspace(0, 3, 140))) * 255).astype(np.uint8)
    shifted = [np.roll(base, s, axis=1)[:, 10:-10] for s in (0, 2, 4, 6)]
    flicker = [np.clip(base[:, 10:-10].astype(int) + rng.integers(-40, 40, (140, 120, 3)), 0, 255).astype(np.uint8) for _ in range(4)]
    moving = M.flow_warping_error(shifted)
    noisy = M.flow_warping_error(flicker)
    assert moving < 0.02
    assert noisy > 3 * moving


def test_jitter_zero_for_linear_and_known_for_alternating():
    assert M.jitter(np.arange(10.0)) == pytest.approx(0.0)
    alt = np.array([0.0, 1.0] * 5)
    assert M.jitter(alt) == pytest.approx(2.0)  # second difference of 0,1,0 is -2
    with pytest.raises(ValueError):
        M.jitter(np.zeros(2))

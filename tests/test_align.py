"""Aligned crop as one affine, its tensor variant, and the seamless paste-back."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from skimage.data import astronaut

from live3dpe.pose import observe
from live3dpe.pose.align import (
    alignment_affine,
    face_mask,
    invert_affine,
    paste_back,
    scale_affine,
    warp_crop,
    warp_crop_tensor,
)
from live3dpe.pose.canonical import five_points
from live3dpe.pose.headpose import project_head


def _landmarks(yaw_deg=0.0, roll_deg=0.0, t=(0.0, -3.0, 60.0), focal=512.0, center=(255.5, 255.5)):
    """Canonical landmarks of a head turned by yaw and rolled in the image."""
    y, r = np.radians(yaw_deg), np.radians(-roll_deg)
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    Rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    R = Rz @ np.diag([1.0, -1.0, -1.0]) @ Ry
    return project_head(R[None], np.array([t]), focal, center)[0]


def _psnr(a, b, weight):
    mse = (weight[..., None] * (a.astype(np.float64) - b) ** 2).sum() / (3 * weight.sum())
    return 10 * np.log10(255.0**2 / mse)


def test_crop_then_inverse_reproduces_the_face_region():
    photo = astronaut()
    obs = observe(_landmarks(t=(-1.0, -6.0, 55.0)), (512, 512))
    crop = warp_crop(photo, obs.crop_affine, 512)
    back = paste_back(np.zeros_like(photo), crop, obs.crop_affine)
    inside = cv2.warpAffine(face_mask(512), obs.crop_affine.astype(np.float64), (512, 512), flags=cv2.WARP_INVERSE_MAP)
    inside = (inside > 0.999).astype(np.float64)
    assert inside.sum() > 5000
    assert _psnr(back, photo, inside) >= 35.0


def test_paste_back_leaves_the_outside_untouched_and_blends_smoothly():
    frame = np.full((480, 640, 3), 40, np.uint8)
    obs = observe(_landmarks(center=(319.5, 239.5)), (640, 480))
    face = np.full((128, 128, 3), 240, np.uint8)  # any size: the affine is rescaled
    out = paste_back(frame, face, obs.crop_affine)
    assert out.shape == frame.shape and out.dtype == np.uint8
    footprint = cv2.warpAffine(np.ones((512, 512), np.float32), obs.crop_affine.astype(np.float64), (640, 480), flags=cv2.WARP_INVERSE_MAP)
    assert (out[footprint == 0] == 40).all()
    cx, cy = (obs.crop_inverse @ [255.5, 255.5, 1]).round().astype(int)
    assert out[cy, cx, 0] == 240
    # no seam: neighbouring pixels never jump by more than a fraction of the contrast
    row = out[cy, :, 0].astype(int)
    assert np.abs(np.diff(row)).max() < 0.25 * 200


def test_crop_is_invariant_to_in_plane_rotation():
    photo = astronaut()
    lm = _landmarks(roll_deg=0.0)
    obs = observe(lm, (512, 512))
    theta = 20.0
    M = cv2.getRotationMatrix2D((255.5, 255.5), theta, 1.0)
    rotated = cv2.warpAffine(photo, M, (512, 512), borderMode=cv2.BORDER_REFLECT_101)
    lm_rot = lm.copy()
    lm_rot[:, :2] = lm[:, :2] @ M[:, :2].T + M[:, 2]
    obs_rot = observe(lm_rot, (512, 512))
    assert abs(obs_rot.roll - obs.roll - theta) < 0.5
    a = warp_crop(photo, obs.crop_affine).astype(float)
    b = warp_crop(rotated, obs_rot.crop_affine).astype(float)
    mask = face_mask(512) > 0.99
    assert np.abs(a - b)[mask].mean() < 4.0


def test_template_places_eyes_and_mouth_like_the_eg3d_crop():
    obs = observe(_landmarks(), (512, 512))
    p = five_points(obs.landmarks[None, :, :2])[0]
    crop = p @ obs.crop_affine[:, :2].T + obs.crop_affine[:, 2]
    eyes_y, mouth_y = crop[:2, 1].mean(), crop[3:, 1].mean()
    assert 200 < eyes_y < 270 and 330 < mouth_y < 420
    assert abs(crop[:, 0].mean() - 255.5) < 15  # horizontally centred


def test_scale_affine_matches_resizing_the_crop():
    photo = astronaut()
    obs = observe(_landmarks(), (512, 512))
    big = warp_crop(photo, obs.crop_affine, 512)
    small = warp_crop(photo, scale_affine(obs.crop_affine, 128 / 512), 128)
    ref = cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(float) - ref).mean() < 6.0
    np.testing.assert_allclose(scale_affine(scale_affine(obs.crop_affine, 0.25), 4.0), obs.crop_affine, atol=1e-4)


def test_tensor_warp_matches_cv2():
    photo = astronaut()
    obs = observe(_landmarks(yaw_deg=20), (512, 512))
    ref = warp_crop(photo, obs.crop_affine, 256 * 2).astype(np.float32)
    t = torch.from_numpy(photo).permute(2, 0, 1)[None].float()
    out = warp_crop_tensor(t, obs.crop_affine[None], 512)[0].permute(1, 2, 0).numpy()
    inside = face_mask(512) > 0.5
    assert np.abs(out - ref)[inside].mean() < 0.5


def test_face_at_the_frame_border_is_padded():
    """Crop pixels beyond the frame edge hold the frame reflected at the edge (not black), in both the
    cv2 and the tensor crop; pasting back touches only pixels inside the frame."""
    frame = np.ascontiguousarray(astronaut()[:, 180:])  # face cut by the left edge
    lm = _landmarks(center=(75.5, 255.5))
    obs = observe(lm, (frame.shape[1], frame.shape[0]))
    crop = warp_crop(frame, obs.crop_affine)
    assert crop.shape == (512, 512, 3)
    yy, xx = np.mgrid[0:512, 0:512]
    src = np.stack([xx, yy, np.ones_like(xx)], -1) @ invert_affine(obs.crop_affine).T
    outside = src[..., 0] < -1.0
    assert outside.mean() > 0.1
    pad = 300
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    A = obs.crop_affine.astype(np.float64).copy()
    A[:, 2] -= A[:, :2] @ np.array([pad, pad], np.float64)
    reflected = cv2.warpAffine(padded, A, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    assert np.abs(crop[outside].astype(int) - reflected[outside].astype(int)).max() <= 1
    assert crop[outside].mean() > 30  # real content, not a black band
    # grid_sample's "reflection" mirrors about the pixel edge (cv2 BORDER_REFLECT), not the edge pixel
    mirrored = cv2.warpAffine(cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REFLECT), A, (512, 512),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
    tensor = warp_crop_tensor(torch.from_numpy(frame).permute(2, 0, 1)[None].float(), obs.crop_affine)
    t_crop = tensor[0].permute(1, 2, 0).numpy()
    assert np.abs(t_crop[outside] - mirrored[outside]).mean() < 1.5
    out = paste_back(frame, crop, obs.crop_affine)
    assert out.shape == frame.shape


def test_face_mask_is_soft_and_centred():
    m = face_mask(256)
    assert m.shape == (256, 256) and m.dtype == np.float32
    assert m[120, 128] == 1.0 and m[0, 0] == 0.0 and m[255, 255] == 0.0
    assert 0 < m[120, 20:40].mean() < 1  # a feathered band, not a hard edge


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="five_points"):
        alignment_affine(np.zeros((1, 4, 2)))
    with pytest.raises(ValueError, match="square"):
        paste_back(np.zeros((10, 10, 3), np.uint8), np.zeros((8, 9, 3), np.uint8), np.eye(2, 3))
    with pytest.raises(ValueError, match="positive"):
        scale_affine(np.eye(2, 3), 0)


def test_closed_form_affine_inverse_and_determinant_match_numpy():
    from live3dpe.pose.align import det2, invert_affine

    A = np.random.default_rng(0).normal(size=(5, 2, 3))
    inv = invert_affine(A)
    eye = np.einsum("bij,bjk->bik", np.concatenate([inv, np.tile([[[0, 0, 1.0]]], (5, 1, 1))], 1), np.concatenate([A, np.tile([[[0, 0, 1.0]]], (5, 1, 1))], 1))
    np.testing.assert_allclose(eye, np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-9)
    np.testing.assert_allclose(det2(A), np.linalg.det(A[..., :2]), rtol=1e-12)
    with pytest.raises(np.linalg.LinAlgError):
        invert_affine(np.zeros((2, 3)))

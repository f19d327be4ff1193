"""Paste-back inside the face contour: the mask's shape, the pose fade, the seam colour match."""
from __future__ import annotations

import dataclasses
from collections import Counter

import cv2
import numpy as np
import pytest

from live3dpe.pose import observe
from live3dpe.pose.align import face_mask, paste_back, scale_affine, warp_crop
from live3dpe.pose.canonical import canonical_face
from live3dpe.pose.headpose import project_head
from live3dpe.pose.paste import (
    FACE_OVAL,
    MASK_SIZE,
    contour_in_crop,
    contour_mask,
    face_box,
    inside_crop,
    paste_face,
    pose_weight,
    seam_gain,
)

FRAME, FACE = 40, 240  # flat grey levels: which image a pixel came from is unambiguous


def _observation(yaw_deg: float = 0.0, frame_size: tuple[int, int] = (640, 480), centre=None, distance: float = 60.0):
    """The observation of a canonical head turned by `yaw_deg`, its origin projected to `centre`."""
    W, H = frame_size
    centre = ((W - 1) / 2, (H - 1) / 2) if centre is None else centre
    y = np.radians(yaw_deg)
    Ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    R = np.diag([1.0, -1.0, -1.0]) @ Ry
    return observe(project_head(R[None], np.array([(0.0, -3.0, distance)]), 512.0, centre)[0], frame_size)


def _flat(shape, level: int) -> np.ndarray:
    return np.full(shape, level, np.uint8)


def _textured_frame(H: int = 480, W: int = 640) -> np.ndarray:
    """A skin-toned frame with smooth texture, so colour statistics mean something."""
    noise = cv2.GaussianBlur(np.random.default_rng(0).normal(0, 25, (H, W, 3)), (0, 0), 6)
    return np.clip(noise + [190, 140, 115], 0, 255).astype(np.uint8)


def _contour_distances(obs, shape) -> tuple[np.ndarray, np.ndarray, float]:
    """Per frame pixel: distance inside the face oval, distance outside it (px), and the face size."""
    oval = np.round(obs.landmarks[FACE_OVAL, :2] * 16).astype(np.int32)
    inside = np.zeros(shape, np.uint8)
    cv2.fillPoly(inside, [oval], 1, cv2.LINE_8, 4)
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5)
    return d_in, d_out, float(np.sqrt(cv2.contourArea(obs.landmarks[FACE_OVAL, :2])))


def _seam_band(obs, frame_shape, face_size: int) -> np.ndarray:
    """Frame pixels where paste_face's mask is strictly between 0 and 1."""
    n = min(MASK_SIZE, face_size)
    A = scale_affine(obs.crop_affine.astype(np.float64), n / obs.crop_size)
    m = contour_mask(contour_in_crop(obs.landmarks, A), n)
    m = cv2.warpAffine(m, A, frame_shape[1::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    return (m > 0.05) & (m < 0.95)


def test_face_oval_is_the_canonical_mesh_boundary():
    """The 36 indices, in order, are exactly the edges that belong to one triangle of the mesh."""
    tri = canonical_face().triangles
    edges = Counter(tuple(sorted(map(int, e))) for t in tri for e in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])))
    boundary = {e for e, count in edges.items() if count == 1}
    loop = {tuple(sorted((int(a), int(b)))) for a, b in zip(FACE_OVAL, np.roll(FACE_OVAL, -1), strict=True)}
    assert len(set(FACE_OVAL.tolist())) == len(FACE_OVAL) == 36
    assert loop == boundary


@pytest.mark.parametrize("yaw", [0.0, 30.0])
def test_mask_follows_the_contour_not_the_ellipse(yaw):
    frame, face = _flat((480, 640, 3), FRAME), _flat((256, 256, 3), FACE)
    obs = _observation(yaw)
    out = paste_face(frame, face, obs, max_gain=1.0)
    old = paste_back(frame, face, obs.crop_affine, crop_size=obs.crop_size)
    d_in, d_out, size = _contour_distances(obs, frame.shape[:2])
    frame_px = np.sqrt(abs(np.linalg.det(obs.crop_inverse[:, :2])))  # frame px per crop px
    slack = 2 * obs.crop_size / MASK_SIZE * frame_px  # two mask pixels
    deep = d_in > (0.05 + 3 * 0.025) * size + slack
    assert deep.sum() > 5000 and (out[deep] == FACE).all()
    A = obs.crop_affine.astype(np.float64)
    old_ellipse = cv2.warpAffine(face_mask(512), A, (640, 480), flags=cv2.WARP_INVERSE_MAP)
    outside = (d_out > 3 * 0.025 * size + slack) & (old_ellipse > 0.5)
    assert outside.sum() > 2000 and (old[outside] != FRAME).all()  # the ellipse pasted the render's background there
    assert (out[outside] == FRAME).all()
    on_contour = (d_in <= 1) & (d_out <= 1)  # the seam is inset: on the face's edge the frame dominates
    assert out[on_contour].mean() < FRAME + 0.15 * (FACE - FRAME)


def test_mask_scales_with_the_face():
    """Inset and feather are fractions of the face: half the face in half the mask is the same mask."""
    obs = _observation()
    A = scale_affine(obs.crop_affine.astype(np.float64), MASK_SIZE / obs.crop_size)
    oval = contour_in_crop(obs.landmarks, A)
    big = contour_mask(oval, MASK_SIZE)
    half = contour_mask(0.5 * oval - 0.25, MASK_SIZE // 2)  # the same crop at half size (pixel centres kept)
    assert 4 * half.sum(dtype=float) == pytest.approx(big.sum(dtype=float), rel=0.02)
    seam = [np.count_nonzero((m > 0.02) & (m < 0.98)) for m in (big, half)]
    assert 4 * seam[1] == pytest.approx(seam[0], rel=0.15)  # twice the perimeter, twice the width
    np.testing.assert_array_equal(contour_mask(oval[::-1], MASK_SIZE), big)  # either winding insets inwards


@pytest.mark.parametrize(("yaw", "pitch"), [(45.0, 0.0), (-50.0, 0.0), (90.0, 10.0), (0.0, 35.0), (5.0, -60.0)])
def test_beyond_the_pose_limits_the_frame_passes_through(yaw, pitch):
    frame = _textured_frame()
    obs = dataclasses.replace(_observation(), yaw=yaw, pitch=pitch)
    out = paste_face(frame, _flat((256, 256, 3), FACE), obs)
    assert out is not frame and np.array_equal(out, frame)


def test_a_really_turned_head_passes_through_and_a_frontal_one_does_not():
    frame, face = _textured_frame(), _flat((256, 256, 3), FACE)
    turned = _observation(60.0)
    assert abs(turned.yaw) > 55
    assert np.array_equal(paste_face(frame, face, turned), frame)
    assert not np.array_equal(paste_face(frame, face, _observation(0.0)), frame)


def test_fade_is_full_then_monotone_then_off():
    frame, face = _flat((480, 640, 3), FRAME), _flat((256, 256, 3), FACE)
    base = _observation()
    yaws = np.arange(0.0, 52.0, 2.0)
    outs = [paste_face(frame, face, dataclasses.replace(base, yaw=-y), max_gain=1.0) for y in yaws]
    change = np.array([np.abs(out.astype(int) - FRAME).mean() for out in outs])
    assert (np.diff(change) <= 0).all()
    full, ramp, off = change[yaws <= 35], change[(yaws > 35) & (yaws < 45)], change[yaws >= 45]
    assert full.min() == full.max() > 0 and (off == 0).all()
    assert (np.diff(np.concatenate([full[-1:], ramp, off[:1]])) < 0).all()


def test_pose_weight_is_a_smooth_ramp():
    w = [pose_weight(y, 0.0, 45.0, 35.0, 10.0) for y in (0.0, 35.0, 40.0, -40.0, 45.0, 80.0)]
    assert w == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.0, 0.0])
    near = [pose_weight(y, 0.0, 45.0, 35.0, 10.0) for y in np.linspace(35.0, 45.0, 101)]
    assert np.abs(np.diff(near)).max() < 0.02  # no jump as the head turns
    assert near[5] > 0.99 and near[-6] < 0.01  # and no kink where the fade starts and ends
    assert pose_weight(0.0, 30.0, 45.0, 35.0, 10.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="fade_deg"):
        pose_weight(0.0, 0.0, 45.0, 35.0, 0.0)


def test_colour_matching_hides_the_seam():
    """The render is the frame's own face with a colour cast: matched, the seam (and the face) show
    the frame again; unmatched, the cast shows all along the seam."""
    frame = _textured_frame()
    obs = _observation()
    A = scale_affine(obs.crop_affine.astype(np.float64), 256 / obs.crop_size)
    face = np.clip(warp_crop(frame, A, 256) * np.array([0.85, 1.12, 0.9]), 0, 255).astype(np.uint8)
    band = _seam_band(obs, frame.shape, 256)
    assert band.sum() > 500
    plain = np.abs(paste_face(frame, face, obs, max_gain=1.0).astype(int) - frame)[band].mean()
    matched = np.abs(paste_face(frame, face, obs).astype(int) - frame)[band].mean()
    assert plain > 5 and matched < 0.25 * plain


def test_seam_gain_is_clamped_and_neutral_without_a_band():
    band = np.zeros((8, 8), np.uint8)
    band[2:4] = 255
    face, frame_crop = _flat((8, 8, 3), 100), np.dstack([_flat((8, 8), 110), _flat((8, 8), 200), _flat((8, 8), 50)])
    np.testing.assert_allclose(seam_gain(face, frame_crop, band, 1.25), [111 / 101, 1.25, 0.8])
    np.testing.assert_array_equal(seam_gain(face, frame_crop, np.zeros_like(band), 1.25), np.ones(3))


@pytest.mark.parametrize("size", [96, 256, 512])
@pytest.mark.parametrize("shift", [0.0, 0.3])  # crop widths; 0.3: the face runs off the crop's edge
def test_face_box_holds_the_whole_mask(size, shift):
    """Only this square of the face is pasted: the mask is zero outside it, and it leaves out much of the crop."""
    obs = _observation()
    A = scale_affine(obs.crop_affine.astype(np.float64), size / obs.crop_size)
    oval = contour_in_crop(obs.landmarks, A) + [shift * size, 0.0]
    x, y, side = face_box(oval, size)
    assert 0 <= x and 0 <= y and x + side <= size and y + side <= size
    inside = np.zeros((size, size), bool)
    inside[y : y + side, x : x + side] = True
    assert (contour_mask(oval, size)[~inside] == 0).all()
    assert inside.mean() < 0.85


@pytest.mark.parametrize(
    ("frame", "face_size"),
    [
        (_flat((480, 640, 3), FRAME), 256),
        (_flat((720, 1280, 3), FRAME), 512),
        (_flat((480, 640), FRAME), 128),  # gray
        (_flat((480, 640, 4), FRAME), 96),  # RGBA, a face smaller than the mask
    ],
)
def test_frame_size_and_dtype_are_kept(frame, face_size):
    H, W = frame.shape[:2]
    before = frame.copy()
    out = paste_face(frame, _flat((face_size, face_size, 3), FACE), _observation(frame_size=(W, H)))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert (out != FRAME).any() and np.array_equal(frame, before)


@pytest.mark.parametrize("centre", [(15.5, 240.0), (630.0, 470.0), (-2000.0, -2000.0)])
def test_a_face_partly_or_wholly_outside_the_frame(centre):
    frame = _textured_frame()
    obs = _observation(centre=centre)
    out = paste_face(frame, _flat((256, 256, 3), FACE), obs)
    assert out.shape == frame.shape
    d_in, d_out, size = _contour_distances(obs, frame.shape[:2])
    far = d_out > 0.2 * size  # well away from the face: untouched
    assert far.any() and np.array_equal(out[far], frame[far])
    assert np.array_equal(out, frame) == (d_in.max() == 0)


def test_a_degenerate_contour_pastes_nothing():
    frame = _textured_frame()
    obs = _observation()
    flat_face = obs.landmarks.copy()
    flat_face[:, 1] = 240.0  # every landmark on one line: no area
    out = paste_face(frame, _flat((256, 256, 3), FACE), dataclasses.replace(obs, landmarks=flat_face))
    assert np.array_equal(out, frame)


def _reproduced_crop(frame: np.ndarray, obs, size: int = 256) -> np.ndarray:
    """The frame's own aligned crop: what a model that reproduces its input renders without an edit."""
    return warp_crop(frame, scale_affine(obs.crop_affine.astype(np.float64), size / obs.crop_size), size)


def _frame_points(obs, crop_points: np.ndarray) -> np.ndarray:
    """Crop px (obs.crop_size) -> frame px."""
    inv = obs.crop_inverse.astype(np.float64)
    return crop_points @ inv[:, :2].T + inv[:, 2]


def test_an_edit_is_pasted_up_to_the_hairline_where_it_changed_the_image():
    """A reproducing model's recolour reaches above the oval to the hairline; beside the cheeks
    (background, in a real frame) and far above, the frame stays as it was."""
    frame = _textured_frame()
    obs = _observation()
    face = np.clip(_reproduced_crop(frame, obs).astype(int) + [-60, 60, -60], 0, 255).astype(np.uint8)  # the whole crop recoloured
    plain = paste_face(frame, face, obs, max_gain=1.0)
    wide = paste_face(frame, face, obs, max_gain=1.0, changed_within=0.2)
    oval = contour_in_crop(obs.landmarks, obs.crop_affine.astype(np.float64))
    size = np.sqrt(abs(cv2.contourArea(oval.astype(np.float32))))
    top = oval[np.argmin(oval[:, 1])]
    greener = lambda out, xy: int(out[int(round(xy[1])), int(round(xy[0]))][1]) - int(frame[int(round(xy[1])), int(round(xy[0]))][1])  # noqa: E731
    forehead, far_above = _frame_points(obs, np.array([top + [0, -0.08 * size], top + [0, -0.5 * size]]))
    assert greener(plain, forehead) == 0 and greener(wide, forehead) > 40
    assert greener(wide, far_above) == 0
    cheek = oval[np.argmax(oval[:, 0] * (oval[:, 1] > oval[:, 1].mean()))]  # the widest point below the centre
    beside = _frame_points(obs, (cheek + [0.1 * size, 0])[None])[0]
    assert greener(wide, beside) == 0


def test_what_an_edit_left_alone_stays_the_frame():
    """Without an edit a reproducing model's image adds nothing beyond the oval: widened or not,
    the same frame comes out."""
    frame = _textured_frame()
    obs = _observation(15.0)
    face = _reproduced_crop(frame, obs)
    np.testing.assert_array_equal(paste_face(frame, face, obs, max_gain=1.0, changed_within=0.2), paste_face(frame, face, obs, max_gain=1.0))


def test_a_widened_mask_fades_out_before_the_crop_edge():
    """Beyond the crop the model's image holds nothing of the frame: the mask is zero at the crop's
    edge, whole in the middle, and grows steadily in between."""
    fade = inside_crop(64, (0, 0, 256), 256, 6.0)
    assert fade[0].max() < 0.01 and fade[:, -1].max() < 0.01 and fade[32, 32] == 1.0
    assert (np.diff(fade[32, :32]) >= 0).all()
    np.testing.assert_array_equal(inside_crop(32, (128, 64, 128), 256, 6.0), fade[16:48, 32:64])  # a square within the crop

"""Head pose from FaceMesh landmarks, and the model camera that sees the head that way.

Fit: a weighted similarity Procrustes of the canonical face (mediapipe's weights) onto the
landmarks lifted to 3-D, first weak-perspective (x, y, z in pixels), then refined under a
pinhole camera of assumed focal length (the webcam's is unknown; `default_focal` takes the
frame's larger side, about a 53° horizontal field of view) by back-projecting each landmark
at its estimated depth. The refinement removes the perspective bias that otherwise shows as
a degree or two of pitch/yaw on faces close to the camera.

Camera: EG3D trains on aligned crops with a fixed radius (2.7) and fixed intrinsics; only the
direction the head is seen from varies, and never roll (the crop removes it). The crop
re-centres the face, so its virtual camera looks straight at the head; we therefore take the
direction from the head to the real camera centre, expressed in head coordinates (the
canonical model's axes are the EG3D world's: x to the subject's left, y up, z out of the face),
and place the model camera on its orbit in that direction with `yaw_pitch_cam2world`. yaw/pitch
are therefore the model camera's (yaw > 0: the camera sees the subject's left cheek, i.e. the
head turned to its right); roll is the in-plane angle of the face in the image, positive when
the face appears turned counter-clockwise, which the crop undoes.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from live3dpe.model.cameras import DEFAULT_FOV_DEG, DEFAULT_PIVOT, DEFAULT_RADIUS, intrinsics_from_fov
from live3dpe.pose.canonical import NUM_MESH_LANDMARKS, canonical_face
from live3dpe.pose.procrustes import cross3, weighted_procrustes


@dataclass(frozen=True)
class HeadPose:
    """A batch of rigid head poses. Camera space is OpenCV's (x right, y down, z forward), cm.

    rotation [B, 3, 3] and translation [B, 3]: p_camera = rotation @ p_head + translation;
    residual [B]: weighted RMS fit error in cm (how face-like the landmarks are).
    """

    rotation: np.ndarray
    translation: np.ndarray
    residual: np.ndarray


def default_focal(width: int, height: int) -> float:
    """Assumed webcam focal length in pixels: the frame's larger side (~53° horizontal fov)."""
    return float(max(width, height))


def _weighted_points(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices, canonical vertices float64, weights) of the landmarks with weight > 0: only
    those influence the fit."""
    keep = np.flatnonzero(weights > 0)
    return keep, canonical_face().vertices[keep].astype(np.float64), weights[keep]


@lru_cache(maxsize=1)
def _fit_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_weighted_points` for mediapipe's weights, built once (the fit runs every frame)."""
    return _weighted_points(canonical_face().weights.astype(np.float64))


def fit_head_pose(
    landmarks: np.ndarray,
    focal: float | np.ndarray,
    center: tuple[float, float] | np.ndarray,
    weights: np.ndarray | None = None,
    iterations: int = 1,
) -> HeadPose:
    """Rigid head pose from FaceMesh landmarks.

    landmarks: [B, N>=468, 3] (x, y pixels; z relative depth in the units of x, as FaceMesh);
    focal: pixels, scalar or [B]; center: principal point (cx, cy), [2] or [B, 2];
    weights: [468] (default: mediapipe's Procrustes weights). -> HeadPose.
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 3 or lm.shape[1] < NUM_MESH_LANDMARKS or lm.shape[2] != 3:
        raise ValueError(f"landmarks must be [B, >=468, 3], got {lm.shape}")
    keep, vertices, w = _fit_points() if weights is None else _weighted_points(np.asarray(weights, np.float64))
    src = np.broadcast_to(vertices, (lm.shape[0],) + vertices.shape)
    lm = lm[:, keep]
    f = np.broadcast_to(np.asarray(focal, np.float64), lm.shape[:1])[:, None]
    c = np.broadcast_to(np.asarray(center, np.float64), (lm.shape[0], 2))[:, None]
    uv = lm[..., :2] - c

    # weak perspective: every landmark at the head's depth
    s, R, tau = weighted_procrustes(src, np.concatenate([uv, lm[..., 2:]], -1), w)
    depth0 = f[:, 0] / s
    rel_z = lm[..., 2] - tau[:, None, 2]  # relative depth in pixels at the head's depth
    t = np.concatenate([tau[:, :2] / s[:, None], depth0[:, None]], -1)
    for _ in range(iterations):
        z = depth0[:, None] * (1.0 + rel_z / f)
        pts = np.concatenate([uv * (z / f)[..., None], z[..., None]], -1)
        s2, R, t = weighted_procrustes(src, pts, w)
        # a face of canonical size: scale the depth hypothesis (and the fit) by the fitted size
        depth0 = depth0 / s2
        t = t / s2[:, None]
    fitted = np.einsum("bij,bnj->bni", R, src) + t[:, None]
    z = depth0[:, None] * (1.0 + rel_z / f)
    pts = np.concatenate([uv * (z / f)[..., None], z[..., None]], -1)
    residual = np.sqrt(np.einsum("n,bn->b", w / w.sum(), ((fitted - pts) ** 2).sum(-1)))
    return HeadPose(rotation=R, translation=t, residual=residual)


def project_head(
    rotation: np.ndarray, translation: np.ndarray, focal: float | np.ndarray, center: tuple[float, float] | np.ndarray
) -> np.ndarray:
    """The inverse problem, FaceMesh-style: canonical landmarks of posed heads in pixels.

    rotation [B, 3, 3], translation [B, 3] (cm, OpenCV camera) -> [B, 468, 3] with x, y the
    pinhole projection and z the depth relative to the head origin scaled like x at that depth.
    Used to test the fit on ground truth and by anything that needs landmarks of a known pose.
    """
    R = np.asarray(rotation, np.float64)
    t = np.asarray(translation, np.float64)
    f = np.broadcast_to(np.asarray(focal, np.float64), R.shape[:1])[:, None]
    c = np.broadcast_to(np.asarray(center, np.float64), (R.shape[0], 2))[:, None]
    cam = np.einsum("bij,nj->bni", R, canonical_face().vertices.astype(np.float64)) + t[:, None]
    xy = cam[..., :2] / cam[..., 2:] * f[..., None] + c
    z = (cam[..., 2] - t[:, None, 2]) * f / t[:, None, 2]
    return np.concatenate([xy, z[..., None]], -1)


@lru_cache(maxsize=8)
def _intrinsics(fov_deg: float) -> np.ndarray:
    """Flattened normalised intrinsics [9] (constant per fov, so built once)."""
    return intrinsics_from_fov(fov_deg, 1).double().numpy().reshape(9)


def lookat(origin: np.ndarray, target: np.ndarray) -> np.ndarray:
    """numpy twin of `cameras.lookat_cam2world` ([B, 3], [B, 3] -> [B, 4, 4]): per frame, a
    handful of tiny torch ops cost more than the whole pose fit."""
    forward = target - origin
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = -cross3(np.broadcast_to(np.array([0.0, 1.0, 0.0]), forward.shape), forward)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = cross3(forward, right)
    up /= np.linalg.norm(up, axis=-1, keepdims=True)
    c2w = np.broadcast_to(np.eye(4), origin.shape[:1] + (4, 4)).copy()
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, forward, origin
    return c2w


def orbit_label(
    yaw: np.ndarray, pitch: np.ndarray, radius: float = DEFAULT_RADIUS, fov_deg: float = DEFAULT_FOV_DEG
) -> np.ndarray:
    """numpy twin of `Camera.from_yaw_pitch(yaw, pitch).label`: yaw, pitch [B] rad -> float32[B, 25]."""
    yaw, pitch = np.broadcast_arrays(np.atleast_1d(np.asarray(yaw, np.float64)), np.asarray(pitch, np.float64))
    origin = radius * np.stack([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)], -1)
    c2w = lookat(origin, np.broadcast_to(np.asarray(DEFAULT_PIVOT, np.float64), origin.shape))
    return np.concatenate([c2w.reshape(-1, 16), np.broadcast_to(_intrinsics(fov_deg), (len(yaw), 9))], -1).astype(np.float32)


def rotate_z_onto(n: np.ndarray) -> np.ndarray:
    """Smallest rotations taking +z onto unit vectors n [B, 3] -> [B, 3, 3]."""
    v = np.stack([-n[:, 1], n[:, 0], np.zeros_like(n[:, 0])], -1)  # z × n
    c = n[:, 2]
    vx = np.zeros(n.shape[:1] + (3, 3))
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 0] = -v[:, 2], v[:, 1], v[:, 2]
    vx[:, 1, 2], vx[:, 2, 0], vx[:, 2, 1] = -v[:, 0], -v[:, 1], v[:, 0]
    return np.eye(3) + vx + vx @ vx / (1.0 + c)[:, None, None]


def head_pose_to_camera(
    rotation: np.ndarray,
    translation: np.ndarray,
    radius: float = DEFAULT_RADIUS,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Model camera (25-value label) seeing the head from where the real camera sees it.

    rotation [B, 3, 3], translation [B, 3] -> label float32 [B, 25], yaw [B], pitch [B], roll [B]
    (radians; see the module docstring for the conventions).
    """
    R = np.asarray(rotation, np.float64)
    t = np.asarray(translation, np.float64)
    if np.any(t[:, 2] <= 0):
        raise ValueError("the head must be in front of the camera (translation z > 0)")
    centre = -np.einsum("bji,bj->bi", R, t)  # camera centre in head coordinates
    d = centre / np.linalg.norm(centre, axis=-1, keepdims=True)
    yaw = np.arctan2(d[:, 0], d[:, 2])
    pitch = np.arctan2(d[:, 1], np.linalg.norm(d[:, [0, 2]], axis=-1))
    label = orbit_label(yaw, pitch, radius, fov_deg)

    # roll: the real camera turned to look at the head, against a roll-free camera looking at the
    # head origin from the same direction
    n = t / np.linalg.norm(t, axis=-1, keepdims=True)
    right = np.einsum("bji,bj->bi", R, rotate_z_onto(n)[:, :, 0])  # its x axis, in head coordinates
    upright = lookat(d, np.zeros_like(d))
    roll = np.arctan2(np.einsum("bi,bi->b", right, upright[:, :3, 1]), np.einsum("bi,bi->b", right, upright[:, :3, 0]))
    return label, yaw, pitch, roll

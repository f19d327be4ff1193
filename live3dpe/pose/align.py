"""The aligned crop the model expects, as one affine matrix, and the way back into the frame.

Recipe (EG3D's in-the-wild preprocessing, which Live3D/3DPE inherit, via Deep3DFaceRecon):
fit an affine projection of a standard 3-D five-point face to the detected five points
(eye centres, nose tip, mouth corners), keep its mean scale `s` and the image `t` of the
template origin, rescale the frame by 300 / s onto a 1024 canvas centred on `t`, take the
central 700 and resize it to 512. The model never saw roll, so the frame is de-rolled about
the five points' centroid first. All of it composes into one 2x3 matrix, frame px -> crop px
(pixel centres at integers, as cv2): one `cv2.warpAffine`, and its inverse pastes back.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import Tensor

# Deep3DFaceRecon's standard five points (BFM mean face, `similarity_Lm3D_all.mat`, re-centred
# as in its PyTorch release): right eye, left eye, nose tip, right and left mouth corner (the
# subject's), y up. Numerical data, not code.
STANDARD_FIVE_POINTS = np.array(
    [
        [-0.31148657, 0.09036078, 0.13377953],
        [0.30979887, 0.08972035, 0.13179526],
        [0.0032535, -0.24617933, 0.55244243],
        [-0.25216928, -0.5813392, 0.22405732],
        [0.2484662, -0.5812824, 0.22235769],
    ]
)
RESCALE_FACTOR = 300.0  # template units -> canvas pixels
CENTER_CROP = 700.0  # central part of the 1024 canvas that becomes the crop


@lru_cache(maxsize=1)
def _template_pinv() -> np.ndarray:
    """Least-squares solver [4, 5] of the affine template projection (image y points down)."""
    X = STANDARD_FIVE_POINTS * np.array([1.0, -1.0, 1.0])
    return np.linalg.pinv(np.concatenate([X, np.ones((5, 1))], 1))


def rotation_about(angle: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Affines [B, 2, 3] turning image content counter-clockwise (as seen, y down) by `angle`
    radians [B] about `center` [B, 2] (cv2.getRotationMatrix2D's convention, batched)."""
    c, s = np.cos(angle), np.sin(angle)
    M = np.empty(angle.shape + (2, 3))
    M[..., 0, 0], M[..., 0, 1], M[..., 1, 0], M[..., 1, 1] = c, s, -s, c
    M[..., :, 2] = center - np.einsum("bij,bj->bi", M[..., :2], center)
    return M


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine `a ∘ b` (apply b first). [..., 2, 3] x [..., 2, 3] -> [..., 2, 3]."""
    out = a[..., :2] @ b
    out[..., :, 2] += a[..., :, 2]
    return out


def det2(m: np.ndarray) -> np.ndarray:
    """Determinants of the [..., 2, 2] blocks of `m` [..., 2, >=2], written out (no LAPACK:
    see `procrustes`, OpenBLAS's threaded LU stalls on a busy CPU)."""
    return m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of 2x3 affines (closed form). [..., 2, 3] -> [..., 2, 3]."""
    A = np.asarray(affine, np.float64)
    d = det2(A)
    if np.any(d == 0):
        raise np.linalg.LinAlgError("singular affine")
    inv = np.stack([np.stack([A[..., 1, 1], -A[..., 0, 1]], -1), np.stack([-A[..., 1, 0], A[..., 0, 0]], -1)], -2)
    inv = inv / d[..., None, None]
    return np.concatenate([inv, -(inv @ A[..., :, 2:])], -1)


def alignment_affine(five_points: np.ndarray, roll: np.ndarray | None = None, crop_size: int = 512) -> np.ndarray:
    """Frame px -> aligned crop px for each face.

    five_points: [B, 5, 2] pixels (order of `canonical.five_points`); roll: [B] radians, the
    face's counter-clockwise in-plane angle (None: no de-rolling). -> [B, 2, 3] float64.
    """
    p = np.asarray(five_points, np.float64)
    if p.ndim != 3 or p.shape[1:] != (5, 2):
        raise ValueError(f"five_points must be [B, 5, 2], got {p.shape}")
    if crop_size <= 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    centroid = p.mean(1)
    derolled = rotation_about(-np.asarray(roll, np.float64), centroid) if roll is not None else None
    q = p if derolled is None else np.einsum("bij,bnj->bni", derolled[..., :2], p) + derolled[:, None, :, 2]
    k = np.einsum("ij,bjc->bic", _template_pinv(), q)  # [B, 4, 2]: columns = image x, image y
    scale = (np.linalg.norm(k[:, :3, 0], axis=-1) + np.linalg.norm(k[:, :3, 1], axis=-1)) / 2
    origin = k[:, 3]  # where the template origin lands: the crop centre
    zoom = crop_size * RESCALE_FACTOR / (CENTER_CROP * scale)
    M = np.zeros(p.shape[:1] + (2, 3))
    M[:, 0, 0] = M[:, 1, 1] = zoom
    M[:, :, 2] = crop_size / 2 - 0.5 - zoom[:, None] * origin  # crop centre between pixels
    return M if derolled is None else compose(M, derolled)


def scale_affine(affine: np.ndarray, factor: float) -> np.ndarray:
    """Retarget a frame -> crop affine to a crop `factor` times as large (e.g. 128 / 512),
    keeping pixel centres consistent. [..., 2, 3] -> [..., 2, 3]."""
    if factor <= 0:
        raise ValueError(f"scale factor must be positive, got {factor}")
    S = np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2]])
    return compose(np.broadcast_to(S, np.shape(affine)).copy(), np.asarray(affine, np.float64))


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """uint8 HxW, HxWx1, HxWx3 or HxWx4 -> contiguous uint8 HxWx3."""
    f = np.asarray(frame)
    if f.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {f.dtype}")
    if f.ndim == 2:
        f = f[..., None]
    if f.ndim != 3 or f.shape[2] not in (1, 3, 4) or min(f.shape[:2]) < 1:
        raise ValueError(f"frame must be HxW, HxWx1, HxWx3 or HxWx4, got shape {f.shape}")
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return np.ascontiguousarray(f[..., :3])


def warp_crop(frame: np.ndarray, affine: np.ndarray, size: int = 512, border: int = cv2.BORDER_REFLECT_101) -> np.ndarray:
    """The aligned crop uint8[size, size, 3] of a frame (uint8, gray/RGB/RGBA) for a 2x3 affine
    frame px -> crop px made for this `size`. Outside the frame: reflected padding."""
    A = np.asarray(affine, np.float64).reshape(2, 3)
    return cv2.warpAffine(as_rgb(frame), A, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


def warp_crop_tensor(images: Tensor, affine: Tensor | np.ndarray, size: int = 512) -> Tensor:
    """grid_sample variant of `warp_crop` for tensors already on the model's device.

    images: [B, C, H, W] float; affine: [B, 2, 3] frame px -> crop px. -> [B, C, size, size],
    bilinear, reflected padding.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
    H, W = images.shape[-2:]
    inv = torch.as_tensor(invert_affine(np.asarray(affine, np.float64)), dtype=images.dtype, device=images.device)
    inv = inv.reshape(-1, 2, 3).expand(images.shape[0], 2, 3)
    idx = torch.arange(size, dtype=images.dtype, device=images.device)
    yy, xx = torch.meshgrid(idx, idx, indexing="ij")
    pix = torch.stack([xx, yy, torch.ones_like(xx)], -1).reshape(1, -1, 3)  # crop pixel centres
    src = torch.einsum("bij,bnj->bni", inv, pix.expand(images.shape[0], -1, -1))
    scale = torch.tensor([2.0 / W, 2.0 / H], dtype=images.dtype, device=images.device)
    grid = ((src + 0.5) * scale - 1.0).reshape(-1, size, size, 2)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def face_mask(
    size: int,
    center: tuple[float, float] = (0.5, 0.5),
    radii: tuple[float, float] = (0.36, 0.4),
    feather: float = 0.08,
) -> np.ndarray:
    """Soft elliptical head mask float32[size, size] in [0, 1] for an aligned crop.

    The ellipse (centre and radii as fractions of the crop) covers the head of an aligned
    crop; it is 1 inside and falls smoothly to 0 over `feather` (fraction of the crop) outside,
    so a pasted result blends into the frame without a seam. Keep ellipse + feather inside the
    crop, else the crop's own edge becomes the seam.
    """
    if size <= 0:
        raise ValueError(f"mask size must be positive, got {size}")
    idx = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = np.meshgrid(idx, idx, indexing="ij")
    d = np.sqrt(((x - center[0]) / radii[0]) ** 2 + ((y - center[1]) / radii[1]) ** 2)
    # distance beyond the ellipse, measured roughly in crop fractions
    outside = (d - 1.0) * min(radii)
    t = np.clip(1.0 - outside / max(feather, 1e-6), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


@lru_cache(maxsize=8)
def _cached_face_mask(size: int, feather: float) -> np.ndarray:
    """`face_mask` once per size: paste_back runs every frame with the same one."""
    m = face_mask(size, feather=feather)
    m.flags.writeable = False
    return m


def paste_back(
    frame: np.ndarray,
    face_rgb: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
    feather: float = 0.08,
    crop_size: int = 512,
) -> np.ndarray:
    """Blend an aligned face image back into the frame; returns a new uint8 HxWx3 frame.

    face_rgb: uint8[S, S, 3] of any size S (the `crop_size` affine is rescaled to it);
    mask: float[S', S'] in [0, 1] (any size; default `face_mask` with `feather`).
    Only the crop's footprint in the frame is warped, so the cost follows the face size.
    """
    out = as_rgb(frame).copy()
    face = as_rgb(face_rgb)
    S = face.shape[0]
    if face.shape[1] != S:
        raise ValueError(f"face image must be square, got {face.shape[:2]}")
    A = scale_affine(np.asarray(affine, np.float64).reshape(2, 3), S / crop_size)
    m = _cached_face_mask(S, feather) if mask is None else np.asarray(mask, np.float32)
    if m.shape != (S, S):
        m = cv2.resize(m, (S, S), interpolation=cv2.INTER_LINEAR)
    # footprint of the crop in the frame, clipped
    corners = np.array([[-0.5, -0.5], [S - 0.5, -0.5], [-0.5, S - 0.5], [S - 0.5, S - 0.5]])
    inv = invert_affine(A)
    fc = corners @ inv[:, :2].T + inv[:, 2]
    H, W = out.shape[:2]
    x0, y0 = np.floor(fc.min(0)).astype(int).clip(0, [W, H])
    x1, y1 = np.ceil(fc.max(0)).astype(int).clip(0, [W, H])
    if x1 <= x0 or y1 <= y0:
        return out
    # frame ROI px -> crop px; WARP_INVERSE_MAP: the matrix maps destination (ROI) to source (crop)
    roi_to_crop = A.copy()
    roi_to_crop[:, 2] += A[:, :2] @ np.array([x0, y0], np.float64)
    dsize = (int(x1 - x0), int(y1 - y0))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    face_roi = cv2.warpAffine(face, roi_to_crop, dsize, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    m_roi = cv2.warpAffine(m, roi_to_crop, dsize, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # m * face + (1 - m) * frame, rounded; in one OpenCV pass (3x faster than the float32 numpy blend)
    out[y0:y1, x0:x1] = cv2.blendLinear(face_roi, out[y0:y1, x0:x1], m_roi, 1.0 - m_roi)
    return out

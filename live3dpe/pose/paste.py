"""Paste the model's face back along the face's own contour, colour-matched at the seam.

`align.paste_back`'s default mask is a fixed ellipse over the whole crop: the render's background
shows as a halo around the face, and on a turned head a disc of it covers the photo. `paste_face`
instead masks with this frame's FaceMesh face oval (inset, feathered in proportion to the face),
scales the render's colour to the frame's in the seam band, and fades to the untouched frame as
the head turns beyond the poses the model was trained on. The warp and blend stay `paste_back`'s.
"""
from __future__ import annotations

import cv2
import numpy as np

from live3dpe.pose.align import as_rgb, paste_back, scale_affine, warp_crop
from live3dpe.pose.estimator import FaceObservation

# mediapipe FaceMesh's face oval (its FACEMESH_FACE_OVAL connections), walked as one closed loop
# from the top of the forehead over the subject's left cheek, the chin and the right cheek.
FACE_OVAL = np.array(
    [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
     152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109],
    np.intp,
)  # fmt: skip
SUBPIXEL_BITS = 4  # fillPoly's fractional bits: the contour moves smoothly, not in whole pixels
SEAM_LEVELS = (0.02, 0.98)  # mask values between which both images show: the seam band
# Crop side at which the mask and the seam colour statistics are made: both are smooth, so a
# small grid does (the face itself stays at full size; `paste_back` resizes the mask to it).
MASK_SIZE = 128


def pose_weight(yaw: float, pitch: float, max_yaw_deg: float, max_pitch_deg: float, fade_deg: float) -> float:
    """How much of the face to paste for a head pose (degrees): 1 within `max_*_deg - fade_deg`,
    0 from `max_*_deg` on (the model has not seen such poses and the frame is the better
    picture), a smoothstep in between, so the face fades out as the head turns."""
    if fade_deg <= 0:
        raise ValueError(f"fade_deg must be positive, got {fade_deg}")

    def ramp(angle: float, limit: float) -> float:
        t = min(max((limit - abs(angle)) / fade_deg, 0.0), 1.0)
        return t * t * (3 - 2 * t)

    return ramp(yaw, max_yaw_deg) * ramp(pitch, max_pitch_deg)


def contour_in_crop(landmarks: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The face oval float64[36, 2] in the crop of a frame -> crop `affine` [2, 3]."""
    A = np.asarray(affine, np.float64)
    return np.asarray(landmarks, np.float64)[FACE_OVAL, :2] @ A[:, :2].T + A[:, 2]


def _next(polygon: np.ndarray) -> np.ndarray:
    """Each vertex's successor around the closed polygon (np.roll, without its overhead)."""
    return np.concatenate((polygon[1:], polygon[:1]))


def signed_area(polygon: np.ndarray) -> float:
    """Shoelace area of a closed polygon [N, 2]; positive when its interior is on the left of each edge."""
    q = _next(polygon)
    return 0.5 * float(polygon[:, 0] @ q[:, 1] - q[:, 0] @ polygon[:, 1])


def blur_radius(sigma: float) -> int:
    """Radius of the Gaussian kernel `contour_mask` blurs with (3 sigma: 99.7 % of its weight)."""
    return int(np.ceil(3 * sigma))


def face_box(contour: np.ndarray, size: int, feather: float = 0.025, pad: float = 2.0) -> tuple[int, int, int]:
    """Square (x0, y0, side) in a `size`-px crop holding all of `contour_mask(contour, ...)`: the
    contour's box grown by the blur's reach (`blur_radius`) and `pad` px, squared, kept inside the crop.
    Pasting only this square skips warping the render's background around it (a quarter of an
    aligned crop)."""
    p = np.asarray(contour, np.float64)
    reach = blur_radius(feather * np.sqrt(abs(signed_area(p)))) + pad
    lo, hi = p.min(0) - reach, p.max(0) + reach
    side = int(np.clip(np.ceil((hi - lo).max()), 1, size))
    x0, y0 = np.clip(np.round((lo + hi - side) / 2), 0, size - side).astype(int)
    return int(x0), int(y0), side


def contour_mask(contour: np.ndarray, size: int, feather: float = 0.025, erode: float = 0.05) -> np.ndarray:
    """Soft mask float32[size, size] in [0, 1] (1 = face) of the polygon `contour` [N, 2] in crop px.

    The polygon is inset by `erode` and blurred with a Gaussian of sigma `feather`, both as
    fractions of the face size (square root of its area), so the seam sits on the face's own
    skin at any face size and the mask has (nearly) vanished at the contour itself. The inset
    moves each vertex along its normal, by any fraction of a pixel: a morphological erosion
    steps by whole pixels (the seam would jump as the face nears the camera), and the oval is
    smooth enough for the two to agree. (Float: OpenCV's uint8 Gaussian is 4x slower here.)
    """
    p = np.asarray(contour, np.float64)
    area = signed_area(p)
    m = np.zeros((size, size), np.float32)
    face_size = np.sqrt(abs(area))
    if face_size < 1.0:
        return m
    tangent = _next(p) - np.concatenate((p[-1:], p[:-1]))
    inward = np.sign(area) * np.stack([-tangent[:, 1], tangent[:, 0]], 1)
    inward /= np.maximum(np.linalg.norm(inward, axis=1, keepdims=True), 1e-9)
    # fillPoly also takes the pixels the outline crosses, about half a pixel beyond it: inset that too
    inset = p + (erode * face_size + 0.5) * inward
    fixed = np.round(inset * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(m, [fixed], 1.0, cv2.LINE_8, SUBPIXEL_BITS)
    sigma = feather * face_size
    k = 2 * blur_radius(sigma) + 1
    return cv2.GaussianBlur(m, (k, k), sigma) if sigma > 0 else m


def seam_gain(face: np.ndarray, frame_crop: np.ndarray, band: np.ndarray, max_gain: float) -> np.ndarray:
    """Per-channel gains float64[3] that bring `face`'s mean over `band` (uint8 mask) to
    `frame_crop`'s there (same-size uint8 RGB images), clamped to [1 / max_gain, max_gain]:
    enough for exposure and white balance, not enough to undo an edit that recolours the face
    on purpose. All ones when the band is empty."""
    if not band.any():
        return np.ones(3)
    face_mean = np.array(cv2.mean(face, band)[:3])
    frame_mean = np.array(cv2.mean(frame_crop, band)[:3])
    return np.clip((frame_mean + 1.0) / (face_mean + 1.0), 1.0 / max_gain, max_gain)


def scale_channels(image: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 with channel c multiplied by gain[c], rounded and saturated (one table lookup)."""
    lut = np.clip(np.arange(256.0)[:, None] * gain + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(image, lut.reshape(256, 1, 3))


def paste_face(
    frame: np.ndarray,
    face_rgb: np.ndarray,
    obs: FaceObservation,
    *,
    max_yaw_deg: float = 45.0,
    max_pitch_deg: float = 35.0,
    fade_deg: float = 10.0,
    feather: float = 0.025,
    erode: float = 0.05,
    max_gain: float = 1.25,
) -> np.ndarray:
    """Blend the model's face image (uint8[S, S, 3], the crop of `obs` at any size S) into the
    frame inside the face contour; returns a new uint8 HxWx3 frame.

    The mask is `contour_mask` of the observed face oval, times `pose_weight` (from
    `max_yaw_deg` / `max_pitch_deg` on the result is the frame itself); the face's colour is
    scaled to the frame's in the seam band (`seam_gain`; `max_gain=1` leaves it as is).
    """
    weight = pose_weight(obs.yaw, obs.pitch, max_yaw_deg, max_pitch_deg, fade_deg)
    if weight == 0.0:
        return as_rgb(frame).copy()
    face = as_rgb(face_rgb)
    S = face.shape[0]
    if face.shape[1] != S:
        raise ValueError(f"face image must be square, got {face.shape[:2]}")
    A = scale_affine(np.asarray(obs.crop_affine, np.float64), S / obs.crop_size)  # frame -> face px
    k = max(S / MASK_SIZE, 1.0)  # face px per mask px
    x0, y0, side = face_box(contour_in_crop(obs.landmarks, A), S, feather, pad=2 * k + 1)
    box = A - [[0, 0, x0], [0, 0, y0]]  # frame -> px of the face's square
    n = max(round(side / k), 1)
    box_n = scale_affine(box, n / side)
    m = contour_mask(contour_in_crop(obs.landmarks, box_n), n, feather, erode)
    sub = face[y0 : y0 + side, x0 : x0 + side]
    if max_gain > 1.0:
        small = cv2.resize(sub, (n, n), interpolation=cv2.INTER_LINEAR)  # samples enough for a mean
        sub = scale_channels(sub, seam_gain(small, warp_crop(frame, box_n, n), cv2.inRange(m, *SEAM_LEVELS), max_gain))
    return paste_back(frame, sub, box, mask=m if weight == 1.0 else m * np.float32(weight), crop_size=side)

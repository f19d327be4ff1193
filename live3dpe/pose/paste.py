"""Paste the model's face back along the face's own contour, colour-matched at the seam.

`align.paste_back`'s default mask is a fixed ellipse over the whole crop: the render's background
shows as a halo around the face, and on a turned head a disc of it covers the photo. `paste_face`
instead masks with this frame's FaceMesh face oval (inset, feathered in proportion to the face),
scales the render's colour to the frame's in the seam band, and fades to the untouched frame as
the head turns beyond the poses the model was trained on. The warp and blend stay `paste_back`'s.

The oval ends mid-forehead and leaves out the ears and the jaw's edge, so an edit that recolours
the skin shows as a mask stamped on the face. A model whose image *is* the input wherever the edit
leaves it alone (the appearance route) can be pasted wherever it differs from the frame:
`changed_within` widens the mask to what the edit changed (`change_mask`) within the oval grown
upwards by a fraction of the face (`grown_upwards`): up to the hairline and the temples, where hair
borders the face, and not beside the cheeks or down the neck, where the background and clothes
are, which the edit often tints too (a model that re-generates its whole image could paste no
halo beyond that either).
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
# Largest channel difference (0-255, after a blur) at which a pixel counts as not changed / fully
# changed: the appearance route reproduces an unedited input to ~1.5 levels RMS, an edit moves
# skin by tens of levels.
CHANGE_LEVELS = (6.0, 18.0)


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


def grown_upwards(polygon: np.ndarray, by: float) -> np.ndarray:
    """`polygon` [N, 2] (image axes, y down) with its upper half moved away from the centroid of its
    vertices: the top vertex by `by` px, the others by less the lower they lie, those below the
    centroid not at all. In an aligned crop (face upright) that reaches the hairline and the
    temples but not the neck or the background beside the cheeks."""
    p = np.asarray(polygon, np.float64)
    centre = p.mean(0)
    radial = p - centre
    up = np.clip(-radial[:, 1] / max(-radial[:, 1].min(), 1e-9), 0.0, 1.0)
    return p + (by * up)[:, None] * radial / np.maximum(np.linalg.norm(radial, axis=1, keepdims=True), 1e-9)


def change_mask(face: np.ndarray, frame_crop: np.ndarray, sigma: float, levels: tuple[float, float] = CHANGE_LEVELS) -> np.ndarray:
    """float32 [0, 1] where `face` differs from `frame_crop` (same-size uint8 RGB): a smoothstep of
    the largest channel difference, blurred by `sigma` px first, so that resampling noise and
    the odd edge do not count and the mask's edge is as soft as the oval's."""
    d = cv2.absdiff(face, frame_crop).max(axis=2).astype(np.float32)
    if sigma > 0:
        k = 2 * blur_radius(sigma) + 1
        d = cv2.GaussianBlur(d, (k, k), sigma)
    t = np.clip((d - levels[0]) / (levels[1] - levels[0]), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def inside_crop(n: int, square: tuple[int, int, int], size: int, fade: float) -> np.ndarray:
    """float32[n, n] over the `square` (x0, y0, side in px of a `size`-px crop) sampled at n x n:
    1 inside the crop, falling to 0 over `fade` mask px towards its edge, beyond which the
    model's image has nothing of the frame (a mask reaching it would end in a hard line)."""
    x0, y0, side = square
    centres = (np.arange(n, dtype=np.float32) + 0.5) * (side / n)  # px of the square
    to_edge = lambda offset: np.minimum(offset + centres, size - offset - centres) * (n / side)  # noqa: E731
    d = np.minimum(to_edge(y0)[:, None], to_edge(x0)[None, :]) - 0.5  # from the pixel's outer side
    t = np.clip(d / max(fade, 1e-6), 0.0, 1.0)
    return t * t * (3 - 2 * t)


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
    changed_within: float = 0.0,
) -> np.ndarray:
    """Blend the model's face image (uint8[S, S, 3], the crop of `obs` at any size S) into the
    frame inside the face contour; returns a new uint8 HxWx3 frame.

    The mask is `contour_mask` of the observed face oval, times `pose_weight` (from
    `max_yaw_deg` / `max_pitch_deg` on the result is the frame itself); the face's colour is
    scaled to the frame's in the seam band (`seam_gain`; `max_gain=1` leaves it as is).
    `changed_within` > 0 (only for a face image that is the frame's own crop wherever it was
    not edited) adds what the face changed (`change_mask`) within the oval grown upwards by that
    fraction of the face size (`grown_upwards`).
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
    oval = contour_in_crop(obs.landmarks, A)
    face_size = np.sqrt(abs(signed_area(oval)))  # face px
    reach = changed_within * face_size
    x0, y0, side = face_box(grown_upwards(oval, reach) if reach > 0 else oval, S, feather, pad=2 * k + 1)
    box = A - [[0, 0, x0], [0, 0, y0]]  # frame -> px of the face's square
    n = max(round(side / k), 1)
    box_n = scale_affine(box, n / side)
    oval_n = contour_in_crop(obs.landmarks, box_n)
    m = face_m = contour_mask(oval_n, n, feather, erode)
    sub = face[y0 : y0 + side, x0 : x0 + side]
    if max_gain > 1.0 or reach > 0:
        small = cv2.resize(sub, (n, n), interpolation=cv2.INTER_AREA)
        frame_small = warp_crop(frame, box_n, n)
    if reach > 0:
        per_mask_px = n / side
        region = contour_mask(grown_upwards(oval_n, reach * per_mask_px), n, feather, erode=0.0)
        region *= inside_crop(n, (x0, y0, side), S, 3 * feather * face_size * per_mask_px)
        m = np.maximum(m, region * change_mask(small, frame_small, feather * face_size * per_mask_px))
    if max_gain > 1.0:
        sub = scale_channels(sub, seam_gain(small, frame_small, cv2.inRange(face_m, *SEAM_LEVELS), max_gain))
    return paste_back(frame, sub, box, mask=m if weight == 1.0 else m * np.float32(weight), crop_size=side)

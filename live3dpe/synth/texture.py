"""The face albedo map, painted in the canonical mesh's UV space from landmark outlines.

Because the map is attached to the mesh, whatever is painted here (brows, irises, lips,
make-up) is seen consistently from every camera.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from live3dpe.pose.canonical import load_canonical_face
from live3dpe.synth import landmarks as lm
from live3dpe.synth.person import Appearance


@lru_cache(maxsize=1)
def _uv_per_cm() -> tuple[np.ndarray, np.ndarray]:
    """Canonical (UV, cm-per-UV scale): UV is close to a frontal projection of the face."""
    v, uv, _ = load_canonical_face()
    A = np.c_[v[:, :2], np.ones(len(v))]
    coef, *_ = np.linalg.lstsq(A, uv, rcond=None)
    return uv, np.abs(np.array([coef[0, 0], coef[1, 1]]))  # UV units per cm along x and y


def _poly(uv: np.ndarray, idx, size: int) -> np.ndarray:
    return np.round(uv[list(idx)] * size * 4).astype(np.int32)  # 2 fractional bits for cv2


def _fill(size: int, polys: list[np.ndarray], blur: float = 0.0) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    cv2.fillPoly(m, polys, 1.0, lineType=cv2.LINE_AA, shift=2)
    if blur > 0:
        m = cv2.GaussianBlur(m, (0, 0), blur)
    return m


def _blob(size: int, centre: np.ndarray, sigma_uv: np.ndarray) -> np.ndarray:
    """Gaussian blob at a UV point. centre [2], sigma_uv [2] -> [size, size]."""
    g = (np.arange(size) + 0.5) / size
    return np.exp(-0.5 * (((g[None, :] - centre[0]) / sigma_uv[0]) ** 2 + ((g[:, None] - centre[1]) / sigma_uv[1]) ** 2))


def _lay(tex: np.ndarray, mask: np.ndarray, colour) -> None:
    tex[:] = tex * (1 - mask[..., None]) + np.asarray(colour, np.float32) * mask[..., None]


def _scaled(uv: np.ndarray, idx, factor_y: float) -> np.ndarray:
    pts = uv[list(idx)]
    c = pts.mean(0)
    return np.c_[pts[:, 0], c[1] + (pts[:, 1] - c[1]) * factor_y]


def _eye(tex: np.ndarray, uv: np.ndarray, contour, app: Appearance, per_cm: np.ndarray, rng) -> None:
    size = tex.shape[0]
    eye = _fill(size, [_poly(uv, contour, size)])
    _lay(tex, eye, app.sclera)
    if not app.blank_eyes:
        pts = uv[list(contour)]
        centre = pts.mean(0) + np.array([rng.normal(0, 0.004), -0.15 * per_cm[1]])
        iris_r = 0.58 * per_cm
        iris = np.zeros((size, size), np.float32)
        axes = tuple(int(round(a * size * 4)) for a in iris_r)
        c4 = tuple(int(round(c * size * 4)) for c in centre)
        cv2.ellipse(iris, c4, axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA, shift=2)
        radial = np.sqrt(
            (((np.arange(size)[None, :] + 0.5) / size - centre[0]) / iris_r[0]) ** 2
            + (((np.arange(size)[:, None] + 0.5) / size - centre[1]) / iris_r[1]) ** 2
        )
        iris_col = np.asarray(app.iris, np.float32)[None, None] * (0.75 + 0.35 * radial[..., None])
        iris_col = np.where(radial[..., None] > 0.85, iris_col * 0.45, iris_col)  # limbal ring
        iris_col = np.where(radial[..., None] < 0.42, np.float32(0.03), iris_col)  # pupil
        m = (iris * eye)[..., None]
        tex[:] = tex * (1 - m) + iris_col * m
    # Lash line along the upper lid, and a soft shadow the lid casts on the eyeball.
    upper = np.array(contour)[[0, *range(9, 16), 0]][1:-1]
    lash = np.zeros((size, size), np.float32)
    cv2.polylines(lash, [_poly(uv, [contour[0], *upper[::-1]], size)], False, 1.0, max(1, size // 160), cv2.LINE_AA, shift=2)
    lash = cv2.GaussianBlur(lash, (0, 0), size / 700)
    shadow = cv2.GaussianBlur(lash, (0, 0), size / 150) * eye
    _lay(tex, np.clip(shadow * 1.5, 0, 0.5), (0.2, 0.15, 0.12))
    _lay(tex, np.clip(lash * 1.6, 0, 1), app.lash)


def paint_face(app: Appearance, size: int = 512, seed: int = 0) -> np.ndarray:
    """Paint the face albedo. -> float32 [size, size, 3] in [0, 1], indexed [v, u]."""
    rng = np.random.default_rng(seed)
    uv, per_cm = _uv_per_cm()
    skin = np.asarray(app.skin, np.float32)
    # Mottling: mostly brightness, a little hue; coarse blotches plus fine grain.
    coarse = cv2.resize(rng.normal(0, 1, (10, 10, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    chroma = np.concatenate([coarse[..., 1:], -coarse[..., 1:].sum(-1, keepdims=True)], -1)
    coarse = coarse[..., :1] + 0.3 * chroma
    fine = cv2.resize(rng.normal(0, 1, (size // 4, size // 4)).astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    tex = skin[None, None] * (1 + app.skin_variation * coarse + 0.3 * app.skin_variation * fine[..., None])
    # Warm cheeks and nose, darker sockets: cheap cues that read as a face.
    red = np.array([0.95, 0.45, 0.42], np.float32)
    for cheek in (50, 280):
        b = _blob(size, uv[cheek], np.array([1.4, 1.2]) * per_cm) * app.blush
        tex = tex * (1 - b[..., None]) + (skin * red * 1.15)[None, None] * b[..., None]
    b = _blob(size, uv[lm.NOSE_TIP], np.array([0.9, 0.8]) * per_cm) * app.blush * 0.6
    tex = tex * (1 - b[..., None]) + (skin * red * 1.1)[None, None] * b[..., None]
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        c = uv[list(eye)].mean(0)
        b = _blob(size, c, np.array([1.9, 1.3]) * per_cm) * app.eye_socket
        tex = tex * (1 - b[..., None]) + (skin * 0.55)[None, None] * b[..., None]
    for nostril in lm.NOSTRILS:
        b = _blob(size, uv[nostril], np.array([0.22, 0.12]) * per_cm) * 0.7
        tex = tex * (1 - b[..., None]) + np.float32(0.08) * b[..., None]
    # Lips, with a darker parting line.
    lips = _fill(size, [_poly(uv, lm.LIPS_OUTER, size)], blur=size / 400)
    _lay(tex, lips, np.asarray(app.lips) * (0.9 + 0.2 * rng.random()))
    parting = np.zeros((size, size), np.float32)
    cv2.polylines(parting, [_poly(uv, lm.LIPS_INNER, size)], True, 1.0, max(1, size // 200), cv2.LINE_AA, shift=2)
    _lay(tex, cv2.GaussianBlur(parting, (0, 0), size / 500) * 0.8, np.asarray(app.lips) * 0.35)
    # Brows: filled outlines thickened per person, with hair-like streaks.
    brow_polys = [np.round(_scaled(uv, b, app.brow_thickness) * size * 4).astype(np.int32) for b in (lm.RIGHT_BROW, lm.LEFT_BROW)]
    brows = _fill(size, brow_polys, blur=size / 350)
    streak = 0.85 + 0.3 * cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), size / 600)
    _lay(tex, brows * 0.9, np.asarray(app.brows)[None, None] * streak[..., None])
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        _eye(tex, uv, eye, app, per_cm, rng)
    if app.face_paint:
        _face_paint(tex, uv, per_cm, app.face_paint)
    return np.clip(tex, 0, 1).astype(np.float32)


def _face_paint(tex: np.ndarray, uv: np.ndarray, per_cm: np.ndarray, kind: str) -> None:
    """Named make-up over the painted face."""
    size = tex.shape[0]
    if kind != "clown":
        raise ValueError(f"unknown face paint {kind!r}")
    for eye in (lm.RIGHT_EYE, lm.LEFT_EYE):
        c = uv[list(eye)].mean(0)
        d = np.array([[0, -2.6], [1.2, 0], [0, 2.0], [-1.2, 0]]) * per_cm + c
        m = _fill(size, [np.round(d * size * 4).astype(np.int32)], blur=size / 500)
        _lay(tex, m * (1 - _fill(size, [_poly(uv, eye, size)])), (0.1, 0.3, 0.85))
    big = np.round((uv[list(lm.LIPS_OUTER)] - uv[list(lm.LIPS_OUTER)].mean(0)) * np.array([1.35, 1.9]) * size * 4 + uv[list(lm.LIPS_OUTER)].mean(0) * size * 4)
    _lay(tex, _fill(size, [big.astype(np.int32)], blur=size / 400), (0.85, 0.05, 0.08))

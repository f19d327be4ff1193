"""Procedural head geometry built around mediapipe's canonical face mesh.

The face mesh (centimetres, face towards +z) is completed by a cranium ellipsoid pushed
behind the face, ears, a neck, shoulders and a hair shell. Everything is built in the
face's centimetre frame and then mapped to EG3D world units by `to_world`: the cranium
centre lands at z = 0 and the scale and eye height are chosen so that a frontal render
at the default camera already is an EG3D-aligned crop (`pose.align.alignment_affine` of
its five points is the identity to a few percent; checked in the tests).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from live3dpe.pose.canonical import load_canonical_face
from live3dpe.synth import landmarks as lm
from live3dpe.synth.landmarks import Part
from live3dpe.synth.mesh import Mesh, ellipsoid, grid_triangles, merge, sphere_directions
from live3dpe.synth.person import Shape

CM_TO_WORLD = 0.0244
EYE_HEIGHT = 0.025  # world y of the eye midpoint
SKULL_CENTRE = np.array([0.0, 3.6, -4.0])  # cranium centre in the face frame (cm)
_ANCHOR = np.array([0.0, 2.62, -4.0])  # face-frame point mapped to (0, EYE_HEIGHT, 0)
_FACE_GAP = 0.25  # cm the cranium stays behind the face surface


@dataclass(frozen=True)
class Head:
    """A built head in world units. `mesh` holds the face first (vertices 0..467);
    `jaw_weight` float[468] and `lid_pairs` int[14, 2] drive expressions."""

    mesh: Mesh
    jaw_weight: np.ndarray
    jaw_pivot: np.ndarray  # world point the jaw rotates about (around the x axis)
    lid_pairs: np.ndarray


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _face_vertices(shape: Shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical face with the person's nose, jaw and chin proportions. -> verts, uv, tris."""
    v, uv, tri = load_canonical_face()
    v = v.astype(np.float64)
    pairs = np.array(lm.INNER_LIP_PAIRS)
    v[pairs[:, 0]] = v[pairs[:, 1]] = (v[pairs[:, 0]] + v[pairs[:, 1]]) / 2  # close the mouth at rest
    tip = v[lm.NOSE_TIP]
    w_nose = np.exp(-np.sum(((v - tip) / np.array([2.0, 2.6, 2.5])) ** 2, axis=1))
    base = tip - np.array([0.0, 0.0, 2.5])
    v = v + w_nose[:, None] * (shape.nose_scale - 1.0) * (v - base)
    below = _smoothstep((-2.0 - v[:, 1]) / 5.0)  # 0 above the nose, 1 at the chin
    v[:, 0] *= 1.0 + (shape.jaw_width - 1.0) * below
    v[:, 1] -= shape.chin_length * below**2
    return v, uv.astype(np.float32), tri.astype(np.int64)


def _direction_angles(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth (from +z towards +x) and elevation of points seen from the cranium centre."""
    d = p - SKULL_CENTRE
    return np.arctan2(d[:, 0], d[:, 2]), np.arctan2(d[:, 1], np.hypot(d[:, 0], d[:, 2]))


def _face_radius(face: np.ndarray, tri: np.ndarray, dirs: np.ndarray, bins: int = 24) -> np.ndarray:
    """Distance from the cranium centre to the face sheet along unit `dirs` [N, 3] (nan = misses).

    The sheet is star-shaped seen from the cranium centre, so locating each direction in
    the (azimuth, elevation) image of the triangles finds the one it crosses; a coarse
    grid of candidate triangles per cell keeps the search small."""
    az, el = _direction_angles(face)
    ang = np.stack([az, el], 1)
    q = np.stack([np.arctan2(dirs[:, 0], dirs[:, 2]), np.arctan2(dirs[:, 1], np.hypot(dirs[:, 0], dirs[:, 2]))], 1)
    lo, hi = ang.min(0), ang.max(0)
    cell = (hi - lo) / bins
    t_lo = np.floor((ang[tri].min(1) - lo) / cell).astype(int).clip(0, bins - 1)
    t_hi = np.floor((ang[tri].max(1) - lo) / cell).astype(int).clip(0, bins - 1)
    members: list[list[int]] = [[] for _ in range(bins * bins)]
    for k, (a0, b0, a1, b1) in enumerate(np.c_[t_lo, t_hi]):
        for i in range(a0, a1 + 1):
            for j in range(b0, b1 + 1):
                members[i * bins + j].append(k)
    cand = np.full((bins * bins, max(map(len, members))), -1)
    for c, m in enumerate(members):
        cand[c, : len(m)] = m
    r = np.full(len(dirs), np.nan)
    inside = np.nonzero(((q >= lo) & (q <= hi)).all(1))[0]
    if not len(inside):
        return r
    qc = np.floor((q[inside] - lo) / cell).astype(int).clip(0, bins - 1)
    C = cand[qc[:, 0] * bins + qc[:, 1]]  # [n, K]
    a = ang[tri[np.maximum(C, 0)]]  # [n, K, 3, 2]
    e1, e2 = a[:, :, 1] - a[:, :, 0], a[:, :, 2] - a[:, :, 0]
    rel = q[inside, None] - a[:, :, 0]
    den = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    s = (rel[..., 0] * e2[..., 1] - rel[..., 1] * e2[..., 0]) / den
    t = (e1[..., 0] * rel[..., 1] - e1[..., 1] * rel[..., 0]) / den
    hit = (C >= 0) & (s >= -1e-6) & (t >= -1e-6) & (s + t <= 1 + 1e-6)
    found = hit.any(1)
    k = C[found, hit[found].argmax(1)]
    d = dirs[inside[found]]
    # Intersect the ray with the crossed triangle's plane for the exact radius.
    v0, v1, v2 = (face[tri[k, j]] - SKULL_CENTRE for j in range(3))
    n = np.cross(v1 - v0, v2 - v0)
    denom = np.sum(n * d, 1)
    r[inside[found]] = np.sum(n * v0, 1) / np.where(np.abs(denom) < 1e-9, 1e-9, denom)
    return r


def _ellipsoid_radius(dirs: np.ndarray, radii: np.ndarray) -> np.ndarray:
    return 1.0 / np.sqrt(np.sum((dirs / radii) ** 2, axis=1))


def _cranium(shape: Shape, face: np.ndarray, tri: np.ndarray) -> tuple[Mesh, np.ndarray]:
    """Cranium ellipsoid with its front kept just behind the face. -> mesh, radius function samples."""
    n_lat, n_lon = 40, 64
    dirs, _, _ = sphere_directions(n_lat, n_lon)
    radii = np.array(shape.skull)
    r = _ellipsoid_radius(dirs, radii)
    r_face = _face_radius(face, tri, dirs)
    covered = ~np.isnan(r_face)
    r[covered] = np.minimum(r[covered], r_face[covered] - _FACE_GAP)
    verts = SKULL_CENTRE + dirs * r[:, None]
    return Mesh(verts, grid_triangles(n_lat, n_lon, wrap=True), Part.SKIN), radii


def _hairline(shape: Shape, az: np.ndarray) -> np.ndarray:
    """Elevation of the hair's lower edge as a function of azimuth (front high, back low)."""
    side = _smoothstep((np.abs(az) - 0.8) / 0.7)  # 0 in front, 1 from the temples back
    back = _smoothstep((np.abs(az) - 1.7) / 1.2)
    low_side = shape.hairline_side if shape.hair_length == 0 else -np.pi / 2
    low_back = shape.hairline_back if shape.hair_length == 0 else -np.pi / 2
    h = shape.hairline_front * (1 - side) + low_side * side
    return h * (1 - back) + low_back * back


def _hair(shape: Shape, face: np.ndarray, tri: np.ndarray, radii: np.ndarray) -> Mesh:
    """A shell over the cranium (and over the face's top, where the hairline dips into it);
    long hair continues below the equator as a hanging cylinder."""
    n_rows, n_lon = 28, 96
    az = np.linspace(-np.pi, np.pi, n_lon, endpoint=False)
    h = _hairline(shape, az)
    f = np.linspace(1.0, 0.0, n_rows)[:, None]
    el = h[None] + (np.pi / 2 - h[None]) * f  # rows from the crown down to the hairline
    A = np.broadcast_to(az, el.shape)
    dirs = np.stack([np.cos(el) * np.sin(A), np.sin(el), np.cos(el) * np.cos(A)], -1).reshape(-1, 3)
    r = _ellipsoid_radius(dirs, radii)
    r_face = _face_radius(face, tri, dirs)
    r = np.where(np.isnan(r_face), r, np.maximum(r, r_face))
    # Thickness fades to zero at the hairline so the hair grows out of the skin without a gap.
    fade = _smoothstep(np.broadcast_to(f, el.shape).reshape(-1) / 0.2)
    r = r + (shape.hair_thickness + shape.hair_volume * np.clip(dirs[:, 1], 0, 1) ** 2) * fade
    pts = SKULL_CENTRE + dirs * r[:, None]
    below = el.reshape(-1) < 0
    if shape.hair_length > 0:  # hang straight down instead of curling under the skull
        eq = np.stack([np.sin(A), np.zeros_like(A), np.cos(A)], -1).reshape(-1, 3)
        r_eq = _ellipsoid_radius(eq, radii) + shape.hair_thickness * fade
        drop = (radii[1] + shape.hair_length) * (-el.reshape(-1) / (np.pi / 2))
        hang = SKULL_CENTRE + eq * r_eq[:, None] - np.array([0.0, 1.0, 0.0]) * drop[:, None]
        pts[below] = hang[below]
    strand = np.broadcast_to(az * 40.0, el.shape).reshape(-1)
    # Rows run from the crown down; columns increase azimuth: outward CCW as `grid_triangles`.
    return Mesh(pts, grid_triangles(n_rows, n_lon, wrap=True), Part.HAIR, strand=strand)


def _ears(shape: Shape, radii: np.ndarray) -> list[Mesh]:
    ears = []
    for side in (-1.0, 1.0):
        e = ellipsoid((0, 0, 0), np.array([0.7, 2.9, 1.7]) * shape.ear_size, 12, 16, Part.SKIN)
        tilt = 0.25
        rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
        centre = SKULL_CENTRE + np.array([side * (radii[0] * 0.97 + 0.3), -3.0, 0.3])
        ears.append(Mesh(e.vertices @ rot.T + centre, e.triangles, Part.SKIN))
    return ears


def _neck_and_shoulders(shape: Shape) -> list[Mesh]:
    rows, cols = 10, 32
    y = np.linspace(SKULL_CENTRE[1] - 3.0, -26.0, rows)
    a = np.linspace(-np.pi, np.pi, cols, endpoint=False)
    Y, A = np.meshgrid(y, a, indexing="ij")
    rx, rz = 5.3 * shape.neck_width, 5.6 * shape.neck_width
    verts = np.stack([rx * np.sin(A), Y, -2.8 + rz * np.cos(A)], -1).reshape(-1, 3)
    neck = Mesh(verts, grid_triangles(rows, cols, wrap=True), Part.SKIN)
    torso = ellipsoid((0.0, -33.0, -4.5), (19.0, 11.0, 10.5), 24, 48, Part.CLOTH)
    return [neck, torso]


def _nose_ball(shape: Shape, face: np.ndarray) -> Mesh:
    centre = face[lm.NOSE_TIP] + np.array([0.0, 0.0, shape.nose_ball * 0.6])
    return ellipsoid(centre, (shape.nose_ball,) * 3, 16, 24, Part.PROP)


def _warp(shape: Shape, p: np.ndarray) -> np.ndarray:
    """Person-specific smooth deformation and proportions, in the face frame (cm)."""
    out = p.copy()
    for f, ph, amp in zip(shape.warp_freq, shape.warp_phase, shape.warp_amp):
        out += np.sin(p @ f + ph)[:, None] * amp
    centre = SKULL_CENTRE
    return centre + (out - centre) * np.array(shape.stretch)


def to_world(shape: Shape, p: np.ndarray) -> np.ndarray:
    """Face-frame centimetres -> EG3D world units. [N, 3] -> [N, 3]."""
    return (p - _ANCHOR) * (CM_TO_WORLD * shape.scale) + np.array([0.0, EYE_HEIGHT, 0.0])


def _mouth_parts(tri: np.ndarray) -> np.ndarray:
    inner = set(lm.LIPS_INNER)
    return np.array([Part.MOUTH if all(int(i) in inner for i in t) else Part.FACE for t in tri], np.int8)


def _jaw_weight() -> np.ndarray:
    """1 for the lower lip and chin, 0 for the upper lip and above, smooth on the cheeks.

    Read off the canonical face, whose slightly parted lips tell upper from lower."""
    face = load_canonical_face()[0].astype(np.float64)
    inner = np.array(lm.LIPS_INNER)
    mid_y = face[inner, 1].mean()
    half_width = np.abs(face[list(lm.MOUTH_CORNERS), 0]).mean()
    below = mid_y - face[:, 1]
    band = 0.05 + 2.5 * _smoothstep((np.abs(face[:, 0]) - half_width * 0.8) / 3.0)
    w = _smoothstep(below / band + 0.0)
    w[list(lm.MOUTH_CORNERS)] = 0.0
    return w * (1 - _smoothstep((np.abs(face[:, 0]) - 5.0) / 2.5))


def build_head(shape: Shape) -> Head:
    """The full head of a person in world units (rest pose)."""
    face, uv, tri = _face_vertices(shape)
    cranium, radii = _cranium(shape, face, tri)
    face_mesh = Mesh(face, tri, _mouth_parts(tri), uv=uv)
    parts = [face_mesh, cranium, *_ears(shape, radii), *_neck_and_shoulders(shape), _hair(shape, face, tri, radii)]
    if shape.nose_ball > 0:
        parts.append(_nose_ball(shape, face))
    mesh = merge(parts)
    world = to_world(shape, _warp(shape, mesh.vertices))
    mesh = Mesh(world, mesh.triangles, mesh.part, mesh.uv, rest=world, strand=mesh.strand)
    pivot = to_world(shape, _warp(shape, np.array([[0.0, 0.5, -3.0]])))[0]
    pairs = np.array(lm.RIGHT_LID_PAIRS + lm.LEFT_LID_PAIRS, np.int64)
    return Head(mesh, _jaw_weight(), pivot, pairs)

"""Synthetic world: rasterizer geometry, camera consistency, determinism, framing, animation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from live3dpe.model.cameras import Camera, generate_rays, project_points
from live3dpe.pose.align import alignment_affine
from live3dpe.pose.canonical import five_points
from live3dpe.synth.expression import Expression, talking_head_sequence
from live3dpe.synth.landmarks import Part
from live3dpe.synth.mesh import ellipsoid
from live3dpe.synth.person import sample_person
from live3dpe.synth.raster import rasterize
from live3dpe.synth.render import render, scene_for


def _label(yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    return Camera.from_yaw_pitch(yaw, pitch).label[0].numpy()


def test_depth_is_ray_distance_to_a_sphere():
    centre, radius, R = np.array([0.04, -0.03, 0.1]), 0.3, 96
    sphere = ellipsoid(centre, (radius,) * 3, 96, 192)
    label = _label(0.4, 0.15)
    frags = rasterize(sphere.vertices, sphere.triangles, label, R)
    o, d = generate_rays(torch.as_tensor(label, dtype=torch.float64)[None], R)
    o, d = o[0].numpy(), d[0].numpy()
    oc = o - centre
    b = np.sum(oc * d, 1)
    disc = b * b - (np.sum(oc * oc, 1) - radius**2)
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0))
    normal = (o + t[:, None] * d - centre) / radius
    cos = -np.sum(normal * d, 1)
    depth = frags.depth.reshape(-1)
    assert np.mean(hit == np.isfinite(depth)) > 0.995  # only silhouette pixels may differ
    # Tessellation error: a chord plane lies at most edge^2 / (8 r) inside the sphere.
    edge = np.linalg.norm(sphere.vertices[sphere.triangles[:, 0]] - sphere.vertices[sphere.triangles[:, 1]], axis=1).max()
    sag = edge**2 / (4 * radius)
    sel = hit & np.isfinite(depth) & (cos > 0.5)
    assert sel.sum() > 0.5 * hit.sum()
    assert np.all(depth[sel] >= t[sel] - 1e-6)  # chords are inside the sphere: never nearer
    assert np.all(depth[sel] - t[sel] <= sag / cos[sel] + 1e-6)


def test_render_depth_matches_projected_surface_point():
    """The rasterizer and cameras.project_points agree on where a surface point lands."""
    person = sample_person(3)
    head = scene_for(person).head
    R = 128
    nose = head.mesh.vertices[4]
    label = _label()
    res = render(person, label, R, supersample=1)
    uv, _ = project_points(torch.as_tensor(label, dtype=torch.float64)[None], torch.as_tensor(nose)[None, None])
    col, row = (uv[0, 0].numpy() * R).astype(int)
    origin = Camera(torch.as_tensor(label)[None]).cam2world[0, :3, 3].numpy()
    assert res.part[row, col] == Part.FACE
    assert abs(res.depth[row, col] - np.linalg.norm(nose - origin)) < 0.01


def test_yaw_moves_the_face_the_way_cameras_say():
    """yaw > 0 puts the camera at +x (the subject's left): the face turns towards image left."""
    person = sample_person(1)

    def face_offset(yaw: float) -> float:
        r = render(person, _label(yaw), 64, supersample=1)
        cols = np.arange(64)[None].repeat(64, 0)
        head = r.mask & (r.part != Part.CLOTH)
        return cols[r.part == Part.FACE].mean() - cols[head].mean()

    left, centre, right = face_offset(0.5), face_offset(0.0), face_offset(-0.5)
    assert left < centre - 1 and right > centre + 1


def test_renders_are_deterministic_per_seed():
    label = _label(0.2, -0.1)
    a = render(sample_person(7), label, 48)
    b = render(sample_person(7), label, 48)
    c = render(sample_person(8), label, 48)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.depth, b.depth)
    assert not np.array_equal(a.image, c.image)


def test_outputs_are_consistent_and_inside_the_render_volume():
    r = render(sample_person(2), _label(0.3, 0.1), 64)
    assert r.image.shape == (64, 64, 3) and r.image.dtype == np.uint8
    assert r.depth.dtype == np.float32 and r.mask.dtype == bool
    assert np.array_equal(np.isfinite(r.depth), r.mask)
    assert np.array_equal(r.part >= 0, r.mask)
    head = r.mask & np.isin(r.part, [Part.FACE, Part.HAIR])
    # EG3D marches rays from 2.25 to 3.3: the head must sit inside that range.
    assert r.depth[head].min() > 2.25 and r.depth[head].max() < 3.3


@pytest.mark.parametrize("seed", [0, 5])
def test_frontal_render_is_an_eg3d_aligned_crop(seed):
    """The EG3D five-point alignment of a frontal render is close to the identity."""
    head = scene_for(sample_person(seed)).head
    uv, _ = project_points(Camera.frontal().label.double(), torch.as_tensor(head.mesh.vertices[:468])[None])
    M = alignment_affine(five_points(uv[0].numpy() * 512 - 0.5)[None])[0]
    assert abs(M[0, 0] - 1) < 0.15
    centre = (np.array([255.5, 255.5]) - M[:, 2]) / M[0, 0]  # frame point that becomes the crop centre
    assert np.all(np.abs(centre - 255.5) < 0.08 * 512)
    face_and_hair = np.isin(head.mesh.part[head.mesh.triangles].max(1), [Part.FACE, Part.HAIR])
    assert np.abs(head.mesh.vertices[head.mesh.triangles[face_and_hair]]).max() < 0.5  # inside the triplane box


def test_expressions_open_the_mouth_and_close_the_eyes():
    person, label = sample_person(4), _label()
    neutral = render(person, label, 96, supersample=1)
    talking = render(person, label, 96, Expression(jaw_open=1.0), supersample=1)
    assert (neutral.part == Part.MOUTH).sum() <= 2 < (talking.part == Part.MOUTH).sum()
    blink = render(person, label, 96, Expression(blink=1.0), supersample=1)
    changed = np.abs(blink.image.astype(int) - neutral.image.astype(int)).sum(-1) > 30
    rows = np.nonzero(changed.any(1))[0]
    assert changed.sum() > 5 and rows.max() < 96 * 0.55  # only around the eyes, upper half


def test_talking_head_sequence_moves_talks_and_blinks():
    seq = talking_head_sequence(250, fps=25, seed=3)
    assert len(seq) == 250 and seq == seq  # noqa: PLR0124
    labels = np.stack([lab for lab, _ in seq])
    assert labels.shape == (250, 25)
    yaw, _ = Camera(torch.as_tensor(labels)).yaw_pitch
    assert float(yaw.abs().max()) < math.radians(26) and float(yaw.std()) > 0.01
    jaw = np.array([e.jaw_open for _, e in seq])
    blink = np.array([e.blink for _, e in seq])
    assert 0 <= jaw.min() and jaw.max() <= 1 and jaw.std() > 0.05
    assert blink.max() > 0.5 and (blink > 0.5).mean() < 0.2
    again = talking_head_sequence(250, fps=25, seed=3)
    assert np.array_equal(labels, np.stack([lab for lab, _ in again]))

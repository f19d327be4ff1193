"""Mesh export: density grid through the renderer's decoder, marching cubes, binary PLY."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from live3dpe.model.config import TINY
from live3dpe.model.mesh import extract_mesh, sample_density, write_ply
from live3dpe.model.renderer import TriplaneRenderer


def read_ply(path):
    data = path.read_bytes()
    head, body = data.split(b"end_header\n", 1)
    lines = head.decode().splitlines()
    nv = int(next(x for x in lines if x.startswith("element vertex")).split()[-1])
    nf = int(next(x for x in lines if x.startswith("element face")).split()[-1])
    v = np.frombuffer(body, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)], count=nv)
    f = np.frombuffer(body, dtype=[("n", "u1"), ("idx", "<i4", 3)], count=nf, offset=v.nbytes)
    return v, f


def test_ply_round_trip(tmp_path):
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2]], np.int32)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    path = write_ply(tmp_path / "t.ply", verts, faces, colours)
    v, f = read_ply(path)
    assert np.array_equal(v["xyz"], verts) and np.array_equal(v["rgb"], colours)
    assert (f["n"] == 3).all() and np.array_equal(f["idx"], faces)
    assert [p.name for p in tmp_path.iterdir()] == ["t.ply"]


@pytest.fixture(scope="module")
def renderer():
    torch.manual_seed(0)
    return TriplaneRenderer(TINY).eval()


def test_density_grid_comes_from_the_renderer_field(renderer):
    planes = torch.randn(1, TINY.triplane_channels, 16, 16)
    sigma, box = sample_density(renderer, planes, resolution=8)
    pts = torch.tensor([[[-box / 2, -box / 2, -box / 2], [box / 2, box / 2, box / 2]]])
    expected = renderer.field(planes)(pts)[1][0, :, 0].detach().numpy()
    assert sigma.shape == (8, 8, 8)
    assert np.allclose([sigma[0, 0, 0], sigma[-1, -1, -1]], expected, atol=1e-5)


def test_mesh_has_valid_faces_colours_and_stays_in_the_box(renderer):
    # planes with structure in the middle of each plane, so the field has a surface to find
    r = 32
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, r), torch.linspace(-1, 1, r), indexing="ij")
    bump = torch.exp(-(xx**2 + yy**2) / 0.1)
    planes = torch.zeros(1, TINY.triplane_channels, r, r)
    c = TINY.plane_channels
    for k in range(3):
        planes[0, k * c : (k + 1) * c] = bump * torch.randn(c, 1, 1)
    verts, faces, colours = extract_mesh(renderer, planes, resolution=24, level=10.0)
    box = TINY.render.box_warp
    assert len(verts) > 0 and faces.max() < len(verts) and colours.shape == (len(verts), 3)
    assert (np.abs(verts) <= box / 2 + 1e-5).all()

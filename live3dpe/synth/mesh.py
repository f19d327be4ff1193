"""Triangle meshes for the synthetic world: a container, primitives and normals.

Meshes are plain numpy arrays so a head can be assembled, deformed and merged cheaply
once per person; triangles are counter-clockwise seen from outside (outward normals).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Mesh:
    """vertices float64[V, 3]; triangles int64[T, 3]; part int8[T] (see `parts.Part`);
    uv float32[V, 2] (face texture coordinates, zero elsewhere); rest float64[V, 3]
    (expression-free object-space positions, for solid textures that stick to the head);
    strand float32[V] (a per-vertex coordinate that hair streaks follow)."""

    vertices: np.ndarray
    triangles: np.ndarray
    part: np.ndarray
    uv: np.ndarray = field(default=None)  # type: ignore[assignment]
    rest: np.ndarray = field(default=None)  # type: ignore[assignment]
    strand: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        n = len(self.vertices)
        self.vertices = np.asarray(self.vertices, np.float64)
        self.triangles = np.asarray(self.triangles, np.int64)
        self.part = np.broadcast_to(np.asarray(self.part, np.int8), (len(self.triangles),)).copy()
        self.uv = np.zeros((n, 2), np.float32) if self.uv is None else np.asarray(self.uv, np.float32)
        self.rest = self.vertices.copy() if self.rest is None else np.asarray(self.rest, np.float64)
        self.strand = np.zeros(n, np.float32) if self.strand is None else np.asarray(self.strand, np.float32)


def merge(meshes: list[Mesh]) -> Mesh:
    """Concatenate meshes into one (triangle indices offset)."""
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(
        vertices=np.concatenate([m.vertices for m in meshes]),
        triangles=np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]),
        part=np.concatenate([m.part for m in meshes]),
        uv=np.concatenate([m.uv for m in meshes]),
        rest=np.concatenate([m.rest for m in meshes]),
        strand=np.concatenate([m.strand for m in meshes]),
    )


def grid_triangles(rows: int, cols: int, wrap: bool) -> np.ndarray:
    """Two triangles per cell of a rows x cols vertex grid (row-major).

    Winding is counter-clockwise when rows run downwards (decreasing y) and columns run
    counter-clockwise seen from above (increasing azimuth from +z towards +x)."""
    c_end = cols if wrap else cols - 1
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(c_end), indexing="ij")
    r, c = r.ravel(), c.ravel()
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    d = (r + 1) * cols + c
    e = (r + 1) * cols + (c + 1) % cols
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)])


def sphere_directions(n_lat: int, n_lon: int, lat_min: float = -np.pi / 2, lat_max: float = np.pi / 2):
    """Unit directions on a latitude/longitude grid -> (dirs[n_lat * n_lon, 3], azimuth, elevation).

    Azimuth is measured from +z towards +x (0 = the face direction), elevation from the
    xz-plane towards +y. Rows go from lat_max down to lat_min."""
    el = np.linspace(lat_max, lat_min, n_lat)
    az = np.linspace(-np.pi, np.pi, n_lon, endpoint=False)
    E, A = np.meshgrid(el, az, indexing="ij")
    dirs = np.stack([np.cos(E) * np.sin(A), np.sin(E), np.cos(E) * np.cos(A)], -1).reshape(-1, 3)
    return dirs, A.ravel(), E.ravel()


def ellipsoid(center, radii, n_lat: int = 24, n_lon: int = 32, part: int = 0) -> Mesh:
    """A closed ellipsoid (poles are degenerate rows of coincident vertices, harmless)."""
    dirs, _, _ = sphere_directions(n_lat, n_lon)
    verts = np.asarray(center, np.float64) + dirs * np.asarray(radii, np.float64)
    return Mesh(verts, grid_triangles(n_lat, n_lon, wrap=True), part)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals. [V, 3], [T, 3] -> [V, 3]."""
    v0, v1, v2 = (vertices[triangles[:, k]] for k in range(3))
    fn = np.cross(v1 - v0, v2 - v0)
    n = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(n, triangles[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)

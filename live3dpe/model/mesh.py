"""Mesh export of an edited head: density of the triplane field on a grid -> marching cubes -> PLY."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)


@torch.inference_mode()
def sample_density(renderer, planes: Tensor, resolution: int = 128, chunk: int = 2**18) -> tuple[np.ndarray, float]:
    """Raw density logits of `planes` [1, 3C, R, R] on a resolution^3 grid over the triplane box.

    Goes through the renderer's own decoder (`renderer.field`) so the mesh shows exactly what
    is rendered. Returns (sigma[x, y, z], box size)."""
    box = float(renderer.cfg.render.box_warp)
    axis = torch.linspace(-box / 2, box / 2, resolution, device=planes.device)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
    field = renderer.field(planes[:1])
    sigma = torch.cat([field(grid[:, i : i + chunk])[1] for i in range(0, grid.shape[1], chunk)], 1)
    return sigma.reshape(resolution, resolution, resolution).float().cpu().numpy(), box


@torch.inference_mode()
def extract_mesh(renderer, planes: Tensor, resolution: int = 128, level: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iso-surface of the density field: vertices [V, 3] (world), faces [F, 3], colours uint8 [V, 3].

    `level` is on the raw density logit (EG3D extracts shapes at 10). When the field never
    crosses it (e.g. an untrained model) the median of the field's upper decile is used instead,
    with a warning."""
    from skimage.measure import marching_cubes

    sigma, box = sample_density(renderer, planes, resolution)
    lo, hi = float(sigma.min()), float(sigma.max())
    if lo == hi:
        raise ValueError("the density field is constant; there is no surface to extract")
    if not lo < level < hi:
        new = float(np.median(sigma[sigma >= np.percentile(sigma, 90)]))
        log.warning("density never crosses %g (range %.3g..%.3g); extracting at %.3g instead", level, lo, hi, new)
        level = new
    verts, faces, _normals, _ = marching_cubes(sigma, level=level, spacing=(box / (resolution - 1),) * 3)
    verts = verts - box / 2
    pts = torch.as_tensor(verts, dtype=planes.dtype, device=planes.device)[None]
    colour = renderer.field(planes[:1])(pts)[0][0, :, :3].clamp(0, 1)
    colours = (colour.float().cpu().numpy() * 255 + 0.5).astype(np.uint8)
    # marching cubes winds faces for increasing values inside; flip so normals point outwards
    return verts.astype(np.float32), faces[:, ::-1].astype(np.int32), colours


def write_ply(path: str | os.PathLike, verts: np.ndarray, faces: np.ndarray, colours: np.ndarray | None = None) -> Path:
    """Binary little-endian PLY with optional per-vertex colours, written atomically."""
    path = Path(path)
    n, f = len(verts), len(faces)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}", "property float x", "property float y", "property float z"]
    vdtype = [("xyz", "<f4", 3)]
    if colours is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        vdtype.append(("rgb", "u1", 3))
    header += [f"element face {f}", "property list uchar int vertex_indices", "end_header"]
    vert = np.empty(n, dtype=vdtype)
    vert["xyz"] = verts
    if colours is not None:
        vert["rgb"] = colours
    face = np.empty(f, dtype=[("n", "u1"), ("idx", "<i4", 3)])
    face["n"], face["idx"] = 3, faces
    tmp = path.with_name(f".{path.name}.part")
    with open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        fh.write(face.tobytes())
    os.replace(tmp, path)
    return path

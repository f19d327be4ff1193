"""A small vectorised CPU z-buffer rasterizer in the model's camera convention.

Triangles are projected with `cameras.project_points`, so pixel (row, col) samples exactly
the ray `cameras.generate_rays` gives for it. Coverage is tested at pixel centres; the
nearest fragment per pixel wins. Barycentrics are perspective-correct, so the interpolated
world point lies on the pixel's ray and its distance from the camera is the depth *along
the ray*, as the model's volume renderer reports it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from live3dpe.model.cameras import project_points, split_label

_NEAR = 1e-3


@dataclass(frozen=True)
class Fragments:
    """Per-pixel result. triangle int64[H, W] (-1 = empty); bary float32[H, W, 3]
    (perspective-correct); depth float32[H, W] (distance along the ray, inf = empty);
    point float64[H, W, 3] (world position of the surface, meaningless where empty)."""

    triangle: np.ndarray
    bary: np.ndarray
    depth: np.ndarray
    point: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        return self.triangle >= 0


def camera_origin(label: np.ndarray) -> np.ndarray:
    """Camera centre in world space from a 25-value label. [25] -> [3]."""
    c2w, _ = split_label(torch.as_tensor(np.asarray(label, np.float64)).reshape(1, 25))
    return c2w[0, :3, 3].numpy()


def project(label: np.ndarray, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates ([0, 1] spans the image) and camera-space z.

    label [25], vertices [V, 3] -> uv [V, 2], z [V]."""
    lab = torch.as_tensor(np.asarray(label, np.float64)).reshape(1, 25)
    uv, z = project_points(lab, torch.as_tensor(vertices, dtype=torch.float64)[None])
    return uv[0].numpy(), z[0].numpy()


def _scan(xy: np.ndarray, tri: np.ndarray, ids: np.ndarray, R: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose centres lie in each triangle, by scanline spans (no bounding-box waste).

    xy [V, 2] pixel coordinates (centres at integers), tri [T, 3], ids [n] triangles to scan
    -> flat pixel index [F] and triangle index [F] per fragment."""
    y = xy[tri[ids], 1]
    y0 = np.ceil(y.min(1)).clip(0, R)
    y1 = np.floor(y.max(1)).clip(-1, R - 1)
    rows = (y1 - y0 + 1).clip(0).astype(np.int64)
    r_tri = np.repeat(ids, rows)
    start = np.cumsum(rows) - rows
    r_y = np.repeat(y0, rows) + (np.arange(rows.sum()) - np.repeat(start, rows))
    xl = np.full(len(r_tri), np.inf)
    xr = np.full(len(r_tri), -np.inf)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        pa, pb = xy[tri[r_tri, i]], xy[tri[r_tri, j]]
        lo, hi = np.minimum(pa[:, 1], pb[:, 1]), np.maximum(pa[:, 1], pb[:, 1])
        crosses = (r_y >= lo) & (r_y <= hi) & (hi > lo)
        t = (r_y - pa[:, 1]) / np.where(hi > lo, pb[:, 1] - pa[:, 1], 1.0)
        x = pa[:, 0] + t * (pb[:, 0] - pa[:, 0])
        xl = np.where(crosses, np.minimum(xl, x), xl)
        xr = np.where(crosses, np.maximum(xr, x), xr)
    ok = xr >= xl
    x0 = np.ceil(np.where(ok, xl, 0)).clip(0, R)
    x1 = np.floor(np.where(ok, xr, -1)).clip(-1, R - 1)
    n = (x1 - x0 + 1).clip(0).astype(np.int64)
    row_pix = r_y.astype(np.int64) * R + x0.astype(np.int64)
    start = np.cumsum(n) - n
    pix = np.repeat(row_pix, n) + (np.arange(n.sum()) - np.repeat(start, n))
    return pix, np.repeat(r_tri, n)


def rasterize(
    vertices: np.ndarray,
    triangles: np.ndarray,
    label: np.ndarray,
    resolution: int,
    two_sided: np.ndarray | None = None,
) -> Fragments:
    """Rasterize world-space triangles seen by one camera.

    vertices float[V, 3] (world units), triangles int[T, 3] (CCW = front), label [25],
    resolution R -> `Fragments` of R x R pixels. Back faces are culled except for
    triangles flagged in `two_sided` bool[T] (open shells whose inside can show).
    """
    R = resolution
    uv, z = project(label, vertices)
    xy = uv * R - 0.5  # pixel centres at integer coordinates
    tri = np.asarray(triangles, np.int64)
    p0, p1, p2 = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
    area = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p2[:, 0] - p0[:, 0]) * (p1[:, 1] - p0[:, 1])
    zt = z[tri]
    # Image y points down, so an outward (CCW in a y-up view) triangle has negative area here.
    keep = (zt > _NEAR).all(1) & (area != 0)
    keep &= (area < 0) if two_sided is None else (area < 0) | two_sided
    ids = np.nonzero(keep)[0]
    pix, ftri = _scan(xy, tri, ids, R)

    triangle = np.full(R * R, -1, np.int64)
    bary = np.zeros((R * R, 3), np.float32)
    depth = np.full(R * R, np.inf, np.float32)
    point = np.zeros((R * R, 3), np.float64)
    if len(pix):
        px, py = (pix % R).astype(np.float64), (pix // R).astype(np.float64)
        a, b, c = xy[tri[ftri, 0]], xy[tri[ftri, 1]], xy[tri[ftri, 2]]
        inv_area = 1.0 / area[ftri]
        # Barycentric weight of vertex k = signed area of the opposite sub-triangle / area.
        l0 = ((b[:, 0] - px) * (c[:, 1] - py) - (c[:, 0] - px) * (b[:, 1] - py)) * inv_area
        l1 = ((c[:, 0] - px) * (a[:, 1] - py) - (a[:, 0] - px) * (c[:, 1] - py)) * inv_area
        lam = np.stack([l0, l1, 1.0 - l0 - l1], 1).clip(0, 1)
        lam /= lam.sum(1, keepdims=True)
        inv_z = (lam / zt[ftri]).sum(1)  # 1/z is affine in screen space
        # z-buffer: per pixel keep the fragment with the largest 1/z (the nearest).
        best = torch.full((R * R,), -np.inf, dtype=torch.float64)
        t_pix, t_inv = torch.from_numpy(pix), torch.from_numpy(inv_z)
        best.scatter_reduce_(0, t_pix, t_inv, reduce="amax")
        win = np.nonzero((t_inv == best[t_pix]).numpy())[0]
        wpix, wtri = pix[win], ftri[win]
        bw = lam[win] / zt[wtri] / inv_z[win, None]  # perspective-correct barycentrics
        P = np.einsum("nk,nkj->nj", bw, vertices[tri[wtri]])
        triangle[wpix] = wtri
        bary[wpix] = bw
        point[wpix] = P
        depth[wpix] = np.linalg.norm(P - camera_origin(label), axis=-1)
    return Fragments(
        triangle=triangle.reshape(R, R),
        bary=bary.reshape(R, R, 3),
        depth=depth.reshape(R, R),
        point=point.reshape(R, R, 3),
    )

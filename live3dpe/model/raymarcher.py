"""Volume rendering quadrature (EG3D `MipRayMarcher2`, the renderer of 3DPE §3).

Discretises the volume rendering equation
    C(r) = ∫ T(t) σ(t) c(t) dt,   T(t) = exp(-∫_{t_n}^{t} σ(s) ds)
on interval midpoints: alpha_k = 1 - exp(-σ_k δ_k), T_k = Π_{j<k} (1 - alpha_j + 1e-10),
w_k = alpha_k T_k, C = Σ w_k c_k (CONVENTIONS.md §8).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _midpoints(t: Tensor) -> Tensor:
    """[B, M, S, C] -> [B, M, S-1, C] interval midpoints along S."""
    return (t[:, :, :-1] + t[:, :, 1:]) / 2


def raymarch(colors: Tensor, sigma: Tensor, depths: Tensor, *, clamp_depth: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """Composite S sorted samples per ray.

    colors: [B, M, S, C]; sigma: [B, M, S, 1] raw density logits (density = softplus(sigma - 1));
    depths: [B, M, S, 1] sorted along S -> rgb [B, M, C] mapped to [-1, 1] by *2-1,
    depth [B, M, 1] (expected depth; rays with zero total weight give +inf), weights [B, M, S-1, 1].

    `clamp_depth` clamps the depth to [min, max] of *all* `depths` (one global range, as the
    official code does, not per ray); chunked callers pass False and clamp once at the end.
    """
    if not (colors.ndim == sigma.ndim == depths.ndim == 4) or sigma.shape[-1] != 1 or depths.shape[-1] != 1:
        raise ValueError(
            f"expected colors [B,M,S,C], sigma/depths [B,M,S,1]; got {tuple(colors.shape)}, "
            f"{tuple(sigma.shape)}, {tuple(depths.shape)}"
        )
    if not (colors.shape[:3] == sigma.shape[:3] == depths.shape[:3]) or colors.shape[2] < 2:
        raise ValueError(f"colors/sigma/depths disagree on [B, M, S>=2]: {colors.shape[:3]}, {sigma.shape[:3]}, {depths.shape[:3]}")
    delta = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid, sigma_mid, depths_mid = _midpoints(colors), _midpoints(sigma), _midpoints(depths)
    alpha = 1 - torch.exp(-F.softplus(sigma_mid - 1) * delta)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], 2), 2)[:, :, :-1]
    weights = alpha * transmittance
    rgb = (weights * colors_mid).sum(2)
    depth = torch.nan_to_num((weights * depths_mid).sum(2) / weights.sum(2), nan=float("inf"))
    if clamp_depth:
        depth = torch.clamp(depth, depths.min(), depths.max())
    return rgb * 2 - 1, depth, weights


def median_depth(weights: Tensor, depths: Tensor, quantile: float = 0.5) -> Tensor:
    """Depth at which a ray has gathered `quantile` of its total weight: the surface it sees.

    The expected depth (a weighted mean) is pulled towards any stray density in front of or behind
    the surface; re-projecting the input photo (guide.py) needs the surface point itself. Linear
    within the sample interval where the accumulated weight crosses `quantile`, so it moves
    continuously with the field (no steps between samples in a live view).

    weights: [B, M, S-1, 1] (`raymarch`), depths: [B, M, S, 1] sorted -> [B, M, 1] (+inf where a
    ray has no weight, as the expected depth).
    """
    total = weights.sum(2, keepdim=True)
    share = weights / total.clamp_min(1e-12)
    crossed = torch.cumsum(share, 2)
    k = (crossed < quantile).sum(2, keepdim=True).clamp(max=weights.shape[2] - 1)
    inside = share.gather(2, k)
    t = ((quantile - (crossed.gather(2, k) - inside)) / inside.clamp_min(1e-12)).clamp(0, 1)
    near, far = depths.gather(2, k), depths.gather(2, k + 1)
    return torch.where(total > 0, near + t * (far - near), float("inf"))[:, :, 0]

"""Depth samplers along rays: stratified coarse pass and importance (fine) pass (CONVENTIONS.md §8).

Both have a deterministic mode. The official renderer always jitters, so a static input
flickers from frame to frame; a live stream wants fixed strata (interval midpoints) and a
fixed inverse-CDF grid instead. Random draws take an optional `torch.Generator`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _uniform(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)


def stratified_depths(
    origins: Tensor,
    ray_start: float,
    ray_end: float,
    n_samples: int,
    *,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Coarse depths: linspace(start, end, S) plus a jitter in [0, δ), δ = (end - start)/(S - 1).

    origins: [B, M, 3] (only its shape, device, dtype are used) -> [B, M, S, 1].
    `deterministic` replaces the jitter by δ/2, the mean of the stochastic samples.
    """
    if n_samples < 2 or not ray_end > ray_start:
        raise ValueError(f"need n_samples >= 2 and ray_end > ray_start, got {n_samples}, [{ray_start}, {ray_end}]")
    B, M = origins.shape[:2]
    delta = (ray_end - ray_start) / (n_samples - 1)
    t = torch.linspace(ray_start, ray_end, n_samples, device=origins.device, dtype=origins.dtype)
    t = t.reshape(1, 1, n_samples, 1).expand(B, M, n_samples, 1)
    jitter = torch.full_like(t, 0.5) if deterministic else _uniform(t.shape, t, generator)
    return t + jitter * delta


def sample_pdf(
    bins: Tensor,
    weights: Tensor,
    n_samples: int,
    *,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Inverse-CDF sampling of a piecewise-constant pdf.

    bins: [R, K+1] sorted bin edges; weights: [R, K] unnormalised bin masses -> [R, n] depths.
    pdf ∝ weights + eps; u ~ U[0, 1) or, deterministic, u = linspace(0, 1, n).
    """
    if bins.ndim != 2 or weights.ndim != 2 or bins.shape != (weights.shape[0], weights.shape[1] + 1):
        raise ValueError(f"bins must be [R, K+1] for weights [R, K], got {tuple(bins.shape)}, {tuple(weights.shape)}")
    R, K = weights.shape
    pdf = (weights + eps) / (weights + eps).sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)  # [R, K+1]
    if deterministic:
        u = torch.linspace(0, 1, n_samples, device=bins.device, dtype=bins.dtype).expand(R, n_samples).contiguous()
    else:
        u = _uniform((R, n_samples), bins, generator)
    idx = torch.searchsorted(cdf, u, right=True)
    lo, hi = (idx - 1).clamp(min=0), idx.clamp(max=K)
    cdf_lo, cdf_hi = cdf.gather(1, lo), cdf.gather(1, hi)
    bins_lo, bins_hi = bins.gather(1, lo), bins.gather(1, hi)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bins_lo + (u - cdf_lo) / denom * (bins_hi - bins_lo)


def importance_depths(
    depths: Tensor,
    weights: Tensor,
    n_samples: int,
    *,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Fine depths drawn where the coarse pass put its weight (EG3D `sample_importance`).

    depths: [B, M, S, 1] coarse depths; weights: [B, M, S-1, 1] their marcher weights
    -> [B, M, n, 1], detached (no gradient flows through sample positions).
    The weights are smoothed (max-pool k2 p1, then avg-pool k2), floored by +0.01, and the
    first and last are dropped; the remaining S-3 masses span the first S-2 depth
    midpoints as bin edges — the official indexing, kept so trained decoders see the
    sample distribution they were trained with.
    """
    B, M, S, _ = depths.shape
    if weights.shape != (B, M, S - 1, 1):
        raise ValueError(f"weights must be [B, M, S-1, 1] = {(B, M, S - 1, 1)}, got {tuple(weights.shape)}")
    if S < 4:
        raise ValueError(f"importance sampling needs at least 4 coarse samples, got {S}")
    with torch.no_grad():
        z = depths.reshape(B * M, S)
        w = F.max_pool1d(weights.reshape(B * M, 1, S - 1), 2, 1, padding=1)
        w = F.avg_pool1d(w, 2, 1).reshape(B * M, S - 1) + 0.01
        mids = (z[:, :-1] + z[:, 1:]) / 2  # [BM, S-1]
        fine = sample_pdf(mids[:, : S - 2], w[:, 1:-1], n_samples, deterministic=deterministic, generator=generator)
    return fine.reshape(B, M, n_samples, 1)

"""Weighted similarity Procrustes (Umeyama), batched in numpy.

numpy rather than torch: the problems are tiny (tens of points) and run on the CPU once per
frame, where torch's per-op overhead would dominate. Determinants are written out rather than
taken with `np.linalg.det`: OpenBLAS's threaded LU can stall for milliseconds waking its
threads on a busy CPU (measured: 2 ms for a 2x2 inverse inside the pose fit, 15 us alone).
"""
from __future__ import annotations

import numpy as np


def cross3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross products of [..., 3] vectors, written out: `np.cross` costs ~100 us a call."""
    return np.stack(
        [
            a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
            a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
            a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0],
        ],
        -1,
    )


def det3(m: np.ndarray) -> np.ndarray:
    """Determinants of [..., 3, 3] matrices (triple product; no LAPACK)."""
    return (m[..., 0, :] * cross3(m[..., 1, :], m[..., 2, :])).sum(-1)


def weighted_procrustes(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares `dst ≈ s * R @ src + t` with per-point weights and a proper rotation.

    src, dst: [B, N, 3]; weights: [N] or [B, N] (non-negative, not all zero) or None.
    Returns scale [B], rotation [B, 3, 3] (det +1), translation [B, 3].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 3 or src.shape[-1] != 3:
        raise ValueError(f"src and dst must both be [B, N, 3], got {src.shape} and {dst.shape}")
    w = np.ones(src.shape[:2]) if weights is None else np.broadcast_to(np.asarray(weights, np.float64), src.shape[:2])
    wsum = w.sum(-1, keepdims=True)
    if (wsum <= 0).any():
        raise ValueError("Procrustes weights must not all be zero")
    w = w / wsum
    mu_s = np.einsum("bn,bnc->bc", w, src)
    mu_d = np.einsum("bn,bnc->bc", w, dst)
    s0 = src - mu_s[:, None]
    d0 = dst - mu_d[:, None]
    cov = np.einsum("bn,bni,bnj->bij", w, d0, s0)  # [B, 3, 3]
    U, S, Vt = np.linalg.svd(cov)
    sign = np.sign(det3(U @ Vt))
    sign[sign == 0] = 1.0
    D = np.ones_like(S)
    D[:, 2] = sign
    R = (U * D[:, None, :]) @ Vt
    if with_scale:
        var_s = np.einsum("bn,bnc->b", w, s0 * s0)
        scale = (S * D).sum(-1) / np.maximum(var_s, 1e-12)
    else:
        scale = np.ones(src.shape[0])
    t = mu_d - scale[:, None] * np.einsum("bij,bj->bi", R, mu_s)
    return scale, R, t

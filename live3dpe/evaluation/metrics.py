"""Image, geometry and temporal metrics that need no learned weights.

Images are float arrays in [0, 1] (H x W x C numpy) unless stated; masks are boolean H x W.
Depth is measured along the ray, as the renderer and the synthetic world report it.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from live3dpe.model.cameras import generate_rays, project_points


def _masked(err: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is None:
        return err.reshape(-1)
    if mask.shape != err.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image shape {err.shape[:2]}")
    return err[mask.astype(bool)].reshape(-1)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels (or inside `mask`); inf for identical inputs."""
    if a.shape != b.shape:
        raise ValueError(f"psnr needs equal shapes, got {a.shape} and {b.shape}")
    sq = _masked((a.astype(np.float64) - b.astype(np.float64)) ** 2, mask)
    if sq.size == 0:
        raise ValueError("psnr: empty mask")
    mse = sq.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Structural similarity (Gaussian window, sigma 1.5), averaged over pixels and channels."""
    if a.shape != b.shape:
        raise ValueError(f"ssim needs equal shapes, got {a.shape} and {b.shape}")
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def depth_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean absolute and relative depth error (inside `mask`)."""
    if pred.shape != gt.shape:
        raise ValueError(f"depth_error needs equal shapes, got {pred.shape} and {gt.shape}")
    diff = _masked(np.abs(pred.astype(np.float64) - gt), mask)
    rel = _masked(np.abs(pred.astype(np.float64) - gt) / np.maximum(np.abs(gt), 1e-8), mask)
    return {"abs": float(diff.mean()), "rel": float(rel.mean())}


def reproject(
    image_b: np.ndarray, depth_a: np.ndarray, label_a: np.ndarray, label_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Warp view B into view A using A's depth (along the ray): the multi-view consistency warp.

    image_b: [H, W, C]; depth_a: [H, W]; labels: [25]. Returns (B seen from A [H, W, C], valid mask [H, W]):
    a pixel is valid when its 3D point lands inside B's image and in front of B.
    """
    H, W = depth_a.shape
    if H != W:
        raise ValueError(f"reproject expects square renders, got depth {depth_a.shape}")
    la = torch.as_tensor(label_a, dtype=torch.float64).reshape(1, 25)
    lb = torch.as_tensor(label_b, dtype=torch.float64).reshape(1, 25)
    origins, dirs = generate_rays(la, H)
    points = origins + dirs * torch.as_tensor(depth_a, dtype=torch.float64).reshape(1, -1, 1)
    uv, z = project_points(lb, points)
    hb, wb = image_b.shape[:2]
    map_x = (uv[0, :, 0].numpy() * wb - 0.5).reshape(H, W).astype(np.float32)
    map_y = (uv[0, :, 1].numpy() * hb - 0.5).reshape(H, W).astype(np.float32)
    warped = cv2.remap(image_b.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    if warped.ndim == 2 and image_b.ndim == 3:
        warped = warped[..., None]
    valid = (map_x >= 0) & (map_x <= wb - 1) & (map_y >= 0) & (map_y <= hb - 1) & (z[0].numpy().reshape(H, W) > 0)
    valid &= np.isfinite(depth_a)
    return warped, valid


def reprojection_consistency(
    image_a: np.ndarray,
    depth_a: np.ndarray,
    label_a: np.ndarray,
    image_b: np.ndarray,
    label_b: np.ndarray,
    mask_a: np.ndarray | None = None,
) -> float:
    """PSNR between view A and view B warped into A by A's depth: high when the two views agree in 3D."""
    warped, valid = reproject(image_b, depth_a, label_a, label_b)
    if mask_a is not None:
        valid &= mask_a.astype(bool)
    return psnr(image_a.astype(np.float32), warped, valid)


_DIS: cv2.DISOpticalFlow | None = None


def optical_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow from frame a to frame b (OpenCV DIS, medium preset) -> [H, W, 2] in pixels."""
    global _DIS
    if _DIS is None:
        _DIS = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def gray(x: np.ndarray) -> np.ndarray:
        x = x if x.dtype == np.uint8 else np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)
        return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x

    return _DIS.calc(gray(a), gray(b), None)


def warp_by_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` sampled at each pixel plus its flow [H, W, 2] (frame t+1 brought back to frame t)."""
    H, W = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    return cv2.remap(image, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_warping_error(frames: list[np.ndarray], fb_threshold: float = 1.0) -> float:
    """Temporal flicker: mean |frame_t - warp(frame_t+1 -> t)| over non-occluded pixels, in [0, 1] units.

    Occlusions are masked with a forward-backward check: forward flow plus the backward flow sampled at
    the forward target must return within `fb_threshold` pixels. Measured on consecutive pairs.
    """
    if len(frames) < 2:
        raise ValueError("flow_warping_error needs at least 2 frames")
    errors = []
    for a, b in zip(frames[:-1], frames[1:]):
        fa = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)
        fb = b.astype(np.float32) / (255.0 if b.dtype == np.uint8 else 1.0)
        fwd = optical_flow(a, b)
        bwd = optical_flow(b, a)
        round_trip = fwd + warp_by_flow(bwd, fwd)
        ok = np.linalg.norm(round_trip, axis=-1) < fb_threshold
        warped = warp_by_flow(fb, fwd)
        err = np.abs(fa - warped)
        err = err.mean(axis=-1) if err.ndim == 3 else err
        if ok.any():
            errors.append(float(err[ok].mean()))
    return float(np.mean(errors)) if errors else float("nan")


def jitter(series: np.ndarray) -> float:
    """Pose jitter: RMS of the second temporal difference (zero for constant or linear motion).

    series: [T] or [T, D] (e.g. yaw/pitch/roll per frame).
    """
    x = np.asarray(series, dtype=np.float64)
    if x.shape[0] < 3:
        raise ValueError("jitter needs at least 3 samples")
    d2 = x[2:] - 2 * x[1:-1] + x[:-2]
    return float(np.sqrt(np.mean(d2**2)))

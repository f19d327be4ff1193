"""Weight-free training losses and metrics.

SSIM stands in for LPIPS when no perceptual weights are available locally: it needs no
pretrained network, so the bundled model trains on a fresh machine. All images are in
[-1, 1] (the renderer's range); SSIM and PSNR map them to [0, 1] first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: Tensor, b: Tensor, window: int = 7, sigma: float = 1.5) -> Tensor:
    """Mean structural similarity of two [-1, 1] image batches [B, C, H, W] (Wang et al. 2004)."""
    a = (a + 1) / 2
    b = (b + 1) / 2
    c = a.shape[1]
    w = _gaussian_window(min(window, a.shape[-1]), sigma, c, a.device, a.dtype)
    pad = w.shape[-1] // 2

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), w, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def image_loss(pred: Tensor, target: Tensor, ssim_weight: float = 0.2, perceptual=None, perceptual_weight: float = 0.8) -> Tensor:
    """L1 plus a weight-free structural term, (1 - w) * L1 + w * (1 - SSIM), plus LPIPS when
    a perceptual network was supplied (the paper's L1 + LPIPS pairing)."""
    l1 = (pred - target).abs().mean()
    loss = l1 if ssim_weight <= 0 else (1 - ssim_weight) * l1 + ssim_weight * (1 - ssim(pred, target))
    if perceptual is not None:
        loss = loss + perceptual_weight * perceptual(pred, target).mean()
    return loss


def resize_like(x: Tensor, ref: Tensor) -> Tensor:
    """Resize `x` to `ref`'s spatial size (targets are often rendered at another resolution)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    if x.shape[-1] > ref.shape[-1]:
        return F.interpolate(x, size=ref.shape[-2:], mode="area")
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def depth_l1(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """L1 on depth along the ray, optionally only where the target has a surface (mask > 0.5).

    With a mask, a pixel of `pred` covering several target pixels is compared with the mean depth
    of its *surface* pixels: averaging the background's placeholder depth in would ask a silhouette
    ray for a surface in front of the head (half covered: half the depth)."""
    if mask is None:
        return (pred - resize_like(target, pred)).abs().mean()
    mask = mask.to(target.dtype)
    coverage = resize_like(mask, pred)
    target = resize_like(target * mask, pred) / coverage.clamp_min(1e-6)
    m = (coverage > 0.5).to(pred.dtype)
    return ((pred - target).abs() * m).sum() / m.sum().clamp_min(1.0)


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (dB) of [-1, 1] images on the [0, 1] scale: [B, C, H, W] -> [B]."""
    mse = (((pred.clamp(-1, 1) - target) / 2) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))

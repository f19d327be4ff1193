"""Image prompts: the MAE ViT-B/16 reference encoder whose tokens are the K = V of Eq. 2.

3DPE encodes a reference (e.g. a stylised face) with an MAE-pretrained ViT and feeds all
its output tokens, cls token included, to the cross-attention. The position table is the
fixed MAE sin-cos table, kept as a non-trainable Parameter so it stays in the state dict
like the official checkpoint.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .layers import ViTBlock, check_image_batch, grid_to_tokens, sincos_pos_embed_2d

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# MAE ViT-B uses an MLP 4x wider than the token width.
VIT_MLP_RATIO = 4


def preprocess_reference(image: np.ndarray | Tensor, resolution: int) -> Tensor:
    """uint8 RGB [H, W, 3] or [B, H, W, 3] -> float32 [B, 3, resolution, resolution], ImageNet-normalised.

    Matches the official reference pipeline: bicubic (antialiased) resize of u8/255, then
    (x - mean) / std. The encoder itself applies no normalisation.
    """
    t = torch.as_tensor(np.asarray(image)) if not isinstance(image, Tensor) else image
    if t.dtype != torch.uint8:
        raise TypeError(f"reference image must be uint8 RGB, got {t.dtype}")
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"reference image must be [H, W, 3] or [B, H, W, 3], got shape {tuple(t.shape)}")
    x = t.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    if tuple(x.shape[-2:]) != (resolution, resolution):
        x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch conv -> tokens."""

    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, H, W] -> [B, (H/p)*(W/p), dim]."""
        return grid_to_tokens(self.proj(x))


class ImagePromptEncoder(nn.Module):
    """MAE ViT encoder: [B, 3, R, R] ImageNet-normalised -> tokens [B, 1 + (R/p)^2, ref_dim] (cls first)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.ref_resolution % cfg.ref_patch:
            raise ValueError(f"ref_resolution {cfg.ref_resolution} is not a multiple of ref_patch {cfg.ref_patch}")
        self.resolution = cfg.ref_resolution
        grid = cfg.ref_resolution // cfg.ref_patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.ref_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed_2d(cfg.ref_dim, grid), requires_grad=False)
        self.patch_embed = PatchEmbed(cfg.ref_patch, cfg.ref_dim)
        self.blocks = nn.ModuleList(ViTBlock(cfg.ref_dim, cfg.ref_heads, VIT_MLP_RATIO) for _ in range(cfg.ref_depth))
        self.norm = nn.LayerNorm(cfg.ref_dim, eps=1e-6)
        nn.init.normal_(self.cls_token, std=0.02)

    def preprocess(self, image: np.ndarray | Tensor) -> Tensor:
        """uint8 [H, W, 3] / [B, H, W, 3] -> normalised [B, 3, R, R] at this encoder's resolution."""
        return preprocess_reference(image, self.resolution)

    def forward(self, image: Tensor) -> Tensor:
        check_image_batch(image, "reference image", (3,), self.resolution)
        x = self.patch_embed(image) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

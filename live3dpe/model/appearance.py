"""The appearance route's prompt side: a field of per-pixel colour transforms in the input image.

The small presets cannot re-generate a person from a 64² triplane (measured: every real face came
out as the same blurry average head). So the prompt edits the *input's* appearance instead: a
small CNN, modulated by the prompt (FiLM), predicts at 1/4 resolution an affine colour transform
per pixel, `out = rgb + A rgb + b` (A: 3x3, b: 3). Applied to the full-resolution input it keeps
every detail of the person (identity, sharpness) and changes colour and material where the
prompt asks; the renderer carries it into 3D by re-projection (see `guide.py`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .image_prompt import IMAGENET_MEAN, IMAGENET_STD
from .layers import key_padding_mask

EDIT_CHANNELS = 12  # 3x3 matrix + 3 offsets
COLOUR_STATS = 7  # mean and std of R, G, B on the face region, plus 1 = "this is an image prompt"


def face_region(size: int, device=None) -> Tensor:
    """The central face ellipse of an EG3D-aligned crop, [size, size] bool: where a portrait's
    skin is, so an image prompt's colour is read from its face, not its background."""
    c = (torch.arange(size, dtype=torch.float32, device=device) + 0.5) / size
    y, x = torch.meshgrid(c, c, indexing="ij")
    return ((x - 0.5) / 0.22) ** 2 + ((y - 0.55) / 0.30) ** 2 <= 1.0


def reference_colour(reference: Tensor) -> Tensor:
    """ImageNet-normalised reference images [B, 3, R, R] -> colour statistics [B, 7].

    The MAE tokens describe a reference's content; these numbers say plainly what colour its face
    is, which holds for any photo or painting (the encoder has only seen synthetic references)."""
    mean = reference.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = reference.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (reference * std + mean) * 2 - 1  # [-1, 1] like the editor's images
    pixels = rgb.flatten(2)[:, :, face_region(reference.shape[-1], reference.device).flatten()]
    flag = reference.new_ones(reference.shape[0], 1)
    return torch.cat([pixels.mean(-1), pixels.std(-1), flag], dim=1)


def apply_colour_transform(rgb: Tensor, edit: Tensor) -> Tensor:
    """rgb [B, 3, H, W] in [-1, 1], edit [B, 12, H, W] -> rgb + A rgb + b per pixel.

    A zero field is the identity, so an untrained or absent edit never changes the input.
    Channel 3 i + j of the field is A[i, j]: column j is channels j, j + 3, j + 6. The product is
    spelled out per column (2-4x faster than einsum's batched matmul on a CPU, measured)."""
    return rgb + edit[:, 9:] + edit[:, 0:9:3] * rgb[:, 0:1] + edit[:, 1:9:3] * rgb[:, 1:2] + edit[:, 2:9:3] * rgb[:, 2:3]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1)


class AppearanceEditor(nn.Module):
    """image [B, 3, R, R] + prompt -> colour-transform field [B, 12, R/4, R/4].

    A small U-Net: two stride-2 convs to R/4, one more level at R/8 for context (skin vs hair vs
    background), back up with a skip. Every block is FiLM-modulated by the prompt: tokens pooled
    by one learned attention query, concatenated with the image prompt's colour statistics.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.appearance_channels
        self.query = nn.Parameter(torch.randn(1, 1, cfg.ref_dim) * cfg.ref_dim**-0.5)
        self.stem = nn.Sequential(_conv(5, c, 2), nn.LeakyReLU(0.2), _conv(c, c, 2), nn.LeakyReLU(0.2))
        self.blocks = nn.ModuleList([_conv(c, c), _conv(c, c, 2), _conv(c, c), _conv(2 * c, c)])
        self.film = nn.Linear(cfg.ref_dim + COLOUR_STATS, 2 * c * len(self.blocks))
        self.head = nn.Conv2d(c, EDIT_CHANNELS, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def condition(self, tokens: Tensor, colour: Tensor | None, attn_mask: Tensor | None = None) -> Tensor:
        """Prompt tokens [B or 1, N, D] (+ colour [B or 1, 7]) -> FiLM parameters [B or 1, 2 * c * blocks].

        attn_mask: boolean [B or 1, 1, N] over the tokens (`layers.key_padding_mask`): padded
        tokens get no pooling weight, so a padded prompt conditions exactly as alone."""
        query = self.query.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        pooled = F.scaled_dot_product_attention(query, tokens, tokens, attn_mask=attn_mask)[:, 0]
        if colour is None:
            colour = pooled.new_zeros(pooled.shape[0], COLOUR_STATS)
        return self.film(torch.cat([pooled, colour.to(pooled.dtype).expand(pooled.shape[0], -1)], dim=1))

    def forward(self, image: Tensor, tokens: Tensor, colour: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """image [B, 3, R, R] in [-1, 1], tokens [B or 1, N, D], colour [B or 1, 7] | None.

        mask: [B or 1, N] bool, True = a real token (prompts padded to one length share a batch);
        a sample with no real token gets the zero field: its input unchanged, as with no prompt."""
        b, _, r, _ = image.shape
        attn_mask = present = None
        if mask is not None:
            attn_mask, present = key_padding_mask(mask, b, tokens.shape[1])
        coords = torch.linspace(-1, 1, r, device=image.device, dtype=image.dtype)
        yy, xx = torch.meshgrid(coords, coords, indexing="ij")
        x = self.stem(torch.cat([image, xx.expand(b, 1, r, r), yy.expand(b, 1, r, r)], dim=1))
        gamma_beta = self.condition(tokens, colour, attn_mask).expand(b, -1).chunk(2 * len(self.blocks), dim=1)

        def block(i: int, h: Tensor) -> Tensor:
            h = self.blocks[i](h)
            return F.leaky_relu(h * (1 + gamma_beta[2 * i][..., None, None]) + gamma_beta[2 * i + 1][..., None, None], 0.2)

        skip = block(0, x)
        low = block(2, block(1, skip))
        up = F.interpolate(low, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        field = self.head(block(3, torch.cat([skip, up], dim=1)))
        return field if present is None else torch.where(present.view(-1, 1, 1, 1), field, 0.0)

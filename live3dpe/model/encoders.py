"""The 3DPE image-to-triplane encoder (paper Sec. 3.2, Fig. 3; Live3D's encoder plus Eq. 2-3).

E_low (ResNet-34 stages 1-2, ASPP) and F (a SegFormer stage) capture the coarse 3D
structure, E_high keeps high-frequency detail. Together they are the frozen 3D prior
distilled from Live3D; `PromptCrossAttention` (Eq. 2) injects the prompt into E_high's
features and `FusionDecoder` (E_t, Eq. 3) decodes both into the triplane. With no prompt
the E_high features go straight to E_t: that is the reconstruction-only Live3D encoder.

All sizes come from `ModelConfig`; `paper` reproduces the official network exactly
(CONVENTIONS.md §4), `tiny` is the same topology at small widths.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .layers import MiTStage, OverlapPatchEmbed, check_image_batch, key_padding_mask, tokens_to_grid

# Coordinate channels appended to RGB: raw row and column indices (not normalised), as in the official code.
COORD_CHANNELS = 2
IMAGE_CHANNELS = 3 + COORD_CHANNELS


def append_pixel_coordinates(image: Tensor) -> Tensor:
    """[B, 3, H, W] -> [B, 5, H, W]: channel 3 = row index i, channel 4 = column index j (0..H-1, 0..W-1)."""
    b, _, h, w = image.shape
    rows = torch.arange(h, dtype=image.dtype, device=image.device).view(1, 1, h, 1).expand(b, 1, h, w)
    cols = torch.arange(w, dtype=image.dtype, device=image.device).view(1, 1, 1, w).expand(b, 1, h, w)
    return torch.cat([image, rows, cols], dim=1)


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride, padding=1)


class BasicBlock(nn.Module):
    """ResNet basic block; 3DPE drops BatchNorm, so every conv carries a bias."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, 1, stride) if stride != 1 or in_channels != out_channels else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(F.relu(self.conv1(x))) + identity)


class ASPP(nn.Module):
    """DeepLabV3 atrous spatial pyramid pooling plus its 3x3 refinement conv (no BatchNorm).

    Branches (1x1, dilated 3x3 per rate, image pooling) are concatenated in that order and
    projected; Dropout(0.5) follows the projection and is inert in eval mode.
    """

    def __init__(self, in_channels: int, channels: int, rates: tuple[int, ...]):
        super().__init__()
        self.point = nn.Conv2d(in_channels, channels, 1)
        self.atrous = nn.ModuleList(nn.Conv2d(in_channels, channels, 3, padding=r, dilation=r) for r in rates)
        self.pooled = nn.Conv2d(in_channels, channels, 1)
        self.project = nn.Conv2d(channels * (len(rates) + 2), channels, 1)
        self.dropout = nn.Dropout(0.5)
        self.refine = conv3x3(channels, channels)

    @staticmethod
    def _atrous(conv: nn.Conv2d, x: Tensor) -> Tensor:
        """A dilated 3x3 conv; when the dilation reaches past the map (small inputs, e.g. the tiny
        preset's 16x16 with rates 24 and 36) every off-centre tap reads zero padding, so it is
        exactly the 1x1 conv of the centre tap, without the slow dilated-conv kernel."""
        if conv.dilation[0] >= x.shape[-2] and conv.dilation[1] >= x.shape[-1]:
            return F.conv2d(x, conv.weight[:, :, 1:2, 1:2], conv.bias)
        return conv(x)

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, channels, H, W]."""
        branches = [F.relu(self.point(x))] + [F.relu(self._atrous(conv, x)) for conv in self.atrous]
        pooled = F.relu(self.pooled(x.mean(dim=(2, 3), keepdim=True)))
        # Bilinear resize of a 1x1 map is a broadcast.
        branches.append(pooled.expand(-1, -1, x.shape[-2], x.shape[-1]))
        y = self.dropout(F.relu(self.project(torch.cat(branches, dim=1))))
        return F.relu(self.refine(y))


class ELow(nn.Module):
    """E_low and F: ResNet-34 stem + layer1 + layer2, ASPP, then a SegFormer stage at 1/8.

    Input [B, 5, H, W] -> dict of `elow_backbone` [B, c2, H/8, W/8], `elow_aspp`
    [B, aspp, H/8, W/8] and `f_feature` [B, f_out, H/4, W/4].
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c1, c2 = cfg.elow_channels
        n1, n2 = cfg.elow_blocks
        self.stem = nn.Conv2d(IMAGE_CHANNELS, c1, 7, 2, padding=3)
        self.layer1 = nn.Sequential(*(BasicBlock(c1, c1) for _ in range(n1)))
        self.layer2 = nn.Sequential(BasicBlock(c1, c2, stride=2), *(BasicBlock(c2, c2) for _ in range(n2 - 1)))
        self.aspp = ASPP(c2, cfg.aspp_channels, cfg.aspp_rates)
        self.transformer = MiTStage(cfg.aspp_channels, cfg.f_dim, cfg.f_blocks, cfg.f_heads, cfg.mlp_ratio)
        self.head = nn.Sequential(
            conv3x3(cfg.f_dim // 4, cfg.f_out_channels), nn.LeakyReLU(), conv3x3(cfg.f_out_channels, cfg.f_out_channels)
        )

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        y = F.max_pool2d(F.relu(self.stem(x)), 3, 2, padding=1)
        backbone = self.layer2(self.layer1(y))
        aspp = self.aspp(backbone)
        f = F.interpolate(self.transformer(aspp), scale_factor=2, mode="bilinear", align_corners=True)
        return {"elow_backbone": backbone, "elow_aspp": aspp, "f_feature": self.head(f)}


class EHigh(nn.Module):
    """E_high: a plain conv stack at 1/4 resolution that keeps high-frequency detail.

    [B, 5, H, W] -> [B, ehigh_channels[1], H/4, W/4]; LeakyReLU between convs, none after the last.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c1, c2 = cfg.ehigh_channels
        layers: list[nn.Module] = [nn.Conv2d(IMAGE_CHANNELS, c1, 7, 2, padding=3), nn.LeakyReLU(), conv3x3(c1, c2, 2)]
        for _ in range(cfg.ehigh_extra_convs):
            layers += [nn.LeakyReLU(), conv3x3(c2, c2)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PromptCrossAttention(nn.Module):
    """Eq. 2: E_high features query the prompt tokens with one softmax(Q K^T / sqrt(d)) V head.

    Q comes from E_high features (pre_conv, stride-4 patch embed); K = V = prompt tokens
    (no projections, so the prompt space is the MAE/CLIP token space itself). The result is
    brought back to E_high's grid with PixelShuffle(2), a 1x1 conv and PixelShuffle(2).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        high = cfg.ehigh_channels[1]
        if cfg.ref_dim % 4:
            raise ValueError(f"ref_dim must be divisible by 4 for PixelShuffle(2), got {cfg.ref_dim}")
        self.ref_dim = cfg.ref_dim
        self.pre_conv = conv3x3(high, cfg.cross_pre_channels)
        self.patch_embed = OverlapPatchEmbed(cfg.cross_pre_channels, cfg.ref_dim, kernel_size=7, stride=4)
        self.proj_tail = nn.Conv2d(cfg.ref_dim // 4, 4 * high, 1, bias=False)

    def query(self, high_feature: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """[B, C_high, h, w] -> (Q [B, (h/4)*(w/4), ref_dim], (h/4, w/4))."""
        return self.patch_embed(self.pre_conv(high_feature))

    def attend(self, query: Tensor, hw: tuple[int, int], prompt_tokens: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Q [B, L, d], prompt [B or 1, N, d] -> [B, C_high, 4 hw[0], 4 hw[1]].

        attn_mask: boolean [B or 1, 1, N] over the keys (`layers.key_padding_mask`), so prompts
        padded to one token count share a batch; None = every token is real."""
        if prompt_tokens.ndim != 3 or prompt_tokens.shape[-1] != self.ref_dim:
            raise ValueError(f"prompt_tokens must be [B, N, {self.ref_dim}], got shape {tuple(prompt_tokens.shape)}")
        if prompt_tokens.shape[0] not in (1, query.shape[0]):
            raise ValueError(f"prompt batch {prompt_tokens.shape[0]} does not match image batch {query.shape[0]}")
        kv = prompt_tokens.to(query.dtype).expand(query.shape[0], -1, -1)
        out = F.scaled_dot_product_attention(query, kv, kv, attn_mask=attn_mask)
        out = F.pixel_shuffle(tokens_to_grid(out, *hw), 2)
        return F.pixel_shuffle(self.proj_tail(out), 2)

    def forward(self, high_feature: Tensor, prompt_tokens: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        return self.attend(*self.query(high_feature), prompt_tokens, attn_mask)


class FusionDecoder(nn.Module):
    """E_t (Eq. 3): fuse the (prompted) E_high features with F's features into the triplane.

    cat([edit, f]) -> conv -> SegFormer stage (spatial-reduction attention) -> conv,
    bilinear x2 (align_corners=True), conv stack -> [B, 3 * plane_channels, H/2, W/2].
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.ehigh_channels[1] + cfg.f_out_channels
        h1, h2 = cfg.final_hidden
        self.merge = conv3x3(c, c)
        self.transformer = MiTStage(c, cfg.final_dim, 1, cfg.final_heads, cfg.mlp_ratio, cfg.final_sr_ratio)
        self.head = nn.Sequential(
            conv3x3(cfg.final_dim // 4, h1),
            nn.LeakyReLU(),
            nn.UpsamplingBilinear2d(scale_factor=2),
            conv3x3(h1, h2),
            nn.LeakyReLU(),
            conv3x3(h2, h2),
            nn.LeakyReLU(),
            conv3x3(h2, cfg.triplane_channels),
            nn.LeakyReLU(),
            conv3x3(cfg.triplane_channels, cfg.triplane_channels),
        )

    def forward(self, edit_feature: Tensor, f_feature: Tensor) -> Tensor:
        """edit [B, C_high, h, w], f [B, C_f, h, w] -> triplane [B, 3 * plane_channels, 2h, 2w]."""
        return self.head(self.transformer(self.merge(torch.cat([edit_feature, f_feature], dim=1))))


class TriplaneEncoder(nn.Module):
    """Image (+ prompt tokens) -> triplane. `prompt_tokens=None` is the 3D prior alone (Live3D).

    Training runs `encode_features` once (prompt-independent, frozen in 3DPE) and `fuse` per
    prompt; `trace` returns every intermediate for conformance tests.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.input_resolution % 32:
            raise ValueError(f"input_resolution must be a multiple of 32, got {cfg.input_resolution}")
        self.cfg = cfg
        self.elow = ELow(cfg)
        self.ehigh = EHigh(cfg)
        # the appearance route edits the input image instead (appearance.py)
        self.cross_attention = None if cfg.appearance_route else PromptCrossAttention(cfg)
        self.fusion = FusionDecoder(cfg)

    def encode_features(self, image: Tensor) -> dict[str, Tensor]:
        """The prompt-independent prior features.

        image: [B, 3, S, S] in [-1, 1] with S = cfg.input_resolution (pixel coordinates are
        appended here), or [B, 5, S, S] used as given.
        Returns elow_backbone [B, c2, S/8, S/8], elow_aspp [B, aspp, S/8, S/8],
        f_feature [B, f_out, S/4, S/4], high_feature [B, C_high, S/4, S/4].
        """
        s = self.cfg.input_resolution
        check_image_batch(image, "image", (3, IMAGE_CHANNELS), s)
        x = append_pixel_coordinates(image) if image.shape[1] == 3 else image
        return {**self.elow(x), "high_feature": self.ehigh(x)}

    def _fuse(self, features: dict[str, Tensor], prompt_tokens: Tensor | None, prompt_mask: Tensor | None = None) -> dict[str, Tensor]:
        missing = [k for k in ("f_feature", "high_feature") if k not in features]
        if missing:
            raise KeyError(f"features lack {missing}; pass the dict returned by encode_features")
        out: dict[str, Tensor] = {}
        edit = features["high_feature"]
        if prompt_tokens is not None:
            if self.cross_attention is None:
                raise ValueError(f"preset {self.cfg.name!r} takes the prompt through its appearance editor, not the triplane encoder")
            query, hw = self.cross_attention.query(edit)
            if prompt_mask is None:
                edit = self.cross_attention.attend(query, hw, prompt_tokens)
            else:
                attn_mask, present = key_padding_mask(prompt_mask, edit.shape[0], prompt_tokens.shape[1])
                # a sample without prompt tokens takes the prompt-free path: E_high's features go straight to E_t
                edit = torch.where(present.view(-1, 1, 1, 1), self.cross_attention.attend(query, hw, prompt_tokens, attn_mask), edit)
            out.update(ref_query_tokens=query, cross_attn_out=edit)
        out["triplane"] = self.fusion(edit, features["f_feature"])
        return out

    def fuse(self, features: dict[str, Tensor], prompt_tokens: Tensor | None = None, prompt_mask: Tensor | None = None) -> Tensor:
        """Prior features (+ prompt tokens [B or 1, N, ref_dim]) -> triplane [B, 3C, S/2, S/2].

        prompt_mask: [B or 1, N] bool, True = a real token (prompts padded to one length share a
        batch); a sample with no real token is fused without prompt. None: every token is real."""
        return self._fuse(features, prompt_tokens, prompt_mask)["triplane"]

    def trace(self, image: Tensor, prompt_tokens: Tensor | None = None) -> dict[str, Tensor]:
        """Every intermediate of one forward pass: the prior features, `ref_query_tokens` and
        `cross_attn_out` (with a prompt) and `triplane`."""
        features = self.encode_features(image)
        return {**features, **self._fuse(features, prompt_tokens)}

    def forward(self, image: Tensor, prompt_tokens: Tensor | None = None) -> Tensor:
        """image [B, 3 or 5, S, S], prompt_tokens [B or 1, N, ref_dim] | None -> [B, 3C, S/2, S/2]."""
        return self.fuse(self.encode_features(image), prompt_tokens)

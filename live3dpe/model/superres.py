"""Super-resolution of the rendered feature image (EG3D `SuperresolutionHybrid8XDC`, 3DPE §3).

Two StyleGAN2 synthesis blocks, each upsampling x2, all layers modulated by the same style
vector (the renderer's learned `const`; no mapping network, no noise). CONVENTIONS.md §9.

Because the style never changes, modulation and demodulation are constants:
`FoldedSuperResolution.from_modulated` precomputes the effective weights once, giving an
ordinary conv net (no per-call affine/demodulation, no activation rescaling passes). The
FIR stays a separate depthwise pass: merging it into the dense transposed conv (one 6x6
kernel) would quadruple the dense multiply-adds.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from live3dpe.model.triplane import EqualizedLinear

_SQRT2 = math.sqrt(2.0)


def fir_filter(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The 4x4 binomial anti-aliasing filter outer([1,3,3,1], [1,3,3,1]) / 64 -> [4, 4]."""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=dtype, device=device)
    return torch.outer(k, k) / 64


def _fir(x: Tensor, f: Tensor, pad: tuple[int, int]) -> Tensor:
    """Per-channel valid 4x4 filtering of x [B, C, H, W] zero-padded (before, after) on both axes."""
    C = x.shape[1]
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(x, f.to(x.dtype)[None, None].expand(C, 1, *f.shape), groups=C)


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """x2 upsampling: zero insertion (samples at even indices), pad (2, 1), FIR with gain 4.

    x: [B, C, H, W] -> [B, C, 2H, 2W].
    """
    B, C, H, W = x.shape
    up = x.new_zeros(B, C, 2 * H, 2 * W)
    up[:, :, ::2, ::2] = x
    return _fir(up, f * 4, (2, 1))


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, f: Tensor | None = None, *, demodulate: bool = True, up: int = 1) -> Tensor:
    """StyleGAN2 modulated convolution (modulate activations, convolve, demodulate outputs).

    x: [B, I, H, W]; weight: [O, I, k, k]; styles: [B, I] -> [B, O, H', W'].
    Demodulation divides output o by sqrt(Σ_{i,kh,kw} (W[o,i] s_i)^2 + 1e-8), which makes
    the layer's output scale independent of the style. up=2 (3x3 only, needs the FIR `f`):
    transposed conv (stride 2, no padding, no kernel flip) -> 2H+1, zero-pad 1, FIR x4 -> 2H.
    """
    if up not in (1, 2):
        raise ValueError(f"up must be 1 or 2, got {up}")
    x = x * styles[:, :, None, None]
    if up == 1:
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    else:
        if f is None or weight.shape[-1] != 3:
            raise ValueError("up=2 needs a 3x3 weight and the FIR filter f")
        x = _fir(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), f * 4, (1, 1))
    if demodulate:
        d = torch.rsqrt((weight[None] * styles[:, None, :, None, None]).square().sum((2, 3, 4)) + 1e-8)  # [B, O]
        x = x * d[:, :, None, None]
    return x


class ModulatedConv(nn.Module):
    """3x3 modulated conv + bias + lrelu(0.2)*sqrt(2) (official `SynthesisLayer`, noise unused).

    Keys: weight [O, I, 3, 3], bias [O], affine.weight [I, style_dim], affine.bias [I]
    (official `superresolution.blockN.convM.*` with the same suffixes).
    """

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, up: int = 1) -> None:
        super().__init__()
        self.up = up
        self.affine = EqualizedLinear(style_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor, f: Tensor) -> Tensor:
        """x: [B, I, H, W], w: [B, style_dim] -> [B, O, up*H, up*W]."""
        x = modulated_conv2d(x, self.weight, self.affine(w), f, up=self.up)
        return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * _SQRT2

    def folded_weight(self, w: Tensor) -> Tensor:
        """Effective [O, I, 3, 3] weight for one style w [style_dim]: W * s_i * d_o."""
        wt = self.weight * self.affine(w)[None, :, None, None]
        return wt * torch.rsqrt(wt.square().sum((1, 2, 3), keepdim=True) + 1e-8)


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB, no demodulation, linear (official `ToRGBLayer`).

    Keys: weight [3, I, 1, 1], bias [3], affine.weight [I, style_dim], affine.bias [I].
    """

    def __init__(self, in_channels: int, style_dim: int, out_channels: int = 3) -> None:
        super().__init__()
        self.affine = EqualizedLinear(style_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = modulated_conv2d(x, self.weight, self.affine(w) * self.gain, demodulate=False)
        return x + self.bias[None, :, None, None]

    def folded_weight(self, w: Tensor) -> Tensor:
        return self.weight * (self.affine(w) * self.gain)[None, :, None, None]


class SynthesisBlock(nn.Module):
    """x -> conv0 (up 2) -> conv1; img -> upsample2d(img) + torgb(x) (skip architecture)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int) -> None:
        super().__init__()
        self.conv0 = ModulatedConv(in_channels, out_channels, style_dim, up=2)
        self.conv1 = ModulatedConv(out_channels, out_channels, style_dim)
        self.torgb = ToRGB(out_channels, style_dim)

    def forward(self, x: Tensor, img: Tensor, w: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        """x: [B, I, H, W], img: [B, 3, H, W], w: [B, style_dim] -> x [B, O, 2H, 2W], img [B, 3, 2H, 2W]."""
        x = self.conv1(self.conv0(x, w, f), w, f)
        return x, upsample2d(img, f) + self.torgb(x, w)


def _resize_to(x: Tensor, resolution: int, antialias: bool) -> Tensor:
    """Official SR input resize (bilinear, align_corners=False) when rendered at another resolution."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=antialias)


def _check_features(x: Tensor, channels: int) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"super-resolution expects features [B, {channels}, H, W], got {tuple(x.shape)}")


class SuperResolution(nn.Module):
    """Feature image [B, C, R, R] -> RGB [B, 3, 4R, 4R] (R = input_resolution), style-modulated.

    The RGB skip path starts from the first 3 feature channels (the raw image). Inputs at
    another resolution are first resized to `input_resolution`, as the official module does.
    Submodules block0/block1 carry the official `superresolution.block0/1.*` keys; the
    official `resample_filter` buffers are the fixed `fir_filter()` (not saved here).
    """

    def __init__(self, in_channels: int, channels: tuple[int, int], style_dim: int, input_resolution: int, antialias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.style_dim = in_channels, style_dim
        self.input_resolution, self.antialias = input_resolution, antialias
        self.block0 = SynthesisBlock(in_channels, channels[0], style_dim)
        self.block1 = SynthesisBlock(channels[0], channels[1], style_dim)
        self.register_buffer("fir", fir_filter(), persistent=False)

    def forward(self, features: Tensor, style: Tensor) -> Tensor:
        """features: [B, C, H, W]; style: [B, style_dim] (or [style_dim]) -> [B, 3, 4R, 4R], not clamped."""
        _check_features(features, self.in_channels)
        x = _resize_to(features, self.input_resolution, self.antialias)
        w = style.reshape(-1, self.style_dim).expand(x.shape[0], self.style_dim)
        x, img = self.block0(x, x[:, :3], w, self.fir)
        return self.block1(x, img, w, self.fir)[1]


class FoldedBlock(nn.Module):
    """One `SynthesisBlock` with its style baked in (non-persistent buffers: derived, never saved)."""

    def __init__(self, block: SynthesisBlock, w: Tensor, f: Tensor) -> None:
        super().__init__()
        for name, t in {
            "up_weight": block.conv0.folded_weight(w).transpose(0, 1),
            "up_bias": block.conv0.bias,
            "conv_weight": block.conv1.folded_weight(w),
            "conv_bias": block.conv1.bias,
            "rgb_weight": block.torgb.folded_weight(w),
            "rgb_bias": block.torgb.bias,
            "fir": f,
            "skip_kernel": (f * 4)[None, None].expand(3, 1, 4, 4),
        }.items():
            self.register_buffer(name, t.detach().clone(), persistent=False)

    def forward(self, x: Tensor, img: Tensor) -> tuple[Tensor, Tensor]:
        """Same contract as `SynthesisBlock.forward` (skip upsampling = stride-2 transposed FIR)."""
        x = _fir(F.conv_transpose2d(x, self.up_weight, stride=2), self.fir * 4, (1, 1))
        x = F.leaky_relu(x + self.up_bias[None, :, None, None], 0.2) * _SQRT2
        x = F.leaky_relu(F.conv2d(x, self.conv_weight, self.conv_bias, padding=1), 0.2) * _SQRT2
        img = F.conv_transpose2d(img, self.skip_kernel, stride=2, padding=1, groups=img.shape[1])
        return x, img + F.conv2d(x, self.rgb_weight, self.rgb_bias)


class FoldedSuperResolution(nn.Module):
    """`SuperResolution` with its constant style baked in: plain convs, no modulation at run time.

    A fold is derived from the modulated module and never saved; rebuild it whenever the
    modulated weights or the style change.
    """

    def __init__(self, sr: SuperResolution, w: Tensor) -> None:
        super().__init__()
        self.in_channels, self.input_resolution, self.antialias = sr.in_channels, sr.input_resolution, sr.antialias
        self.block0 = FoldedBlock(sr.block0, w, sr.fir)
        self.block1 = FoldedBlock(sr.block1, w, sr.fir)

    @classmethod
    @torch.no_grad()
    def from_modulated(cls, sr: SuperResolution, style: Tensor) -> FoldedSuperResolution:
        """Fold `sr` for one style vector `style` ([style_dim] or [1, 1, style_dim])."""
        if style.numel() != sr.style_dim:
            raise ValueError(f"style must hold {sr.style_dim} values, got shape {tuple(style.shape)}")
        return cls(sr, style.reshape(sr.style_dim))

    def forward(self, features: Tensor, style: Tensor | None = None) -> Tensor:
        """features: [B, C, H, W] -> [B, 3, 4R, 4R]. `style` is ignored (baked in); accepted so
        both modules share a call signature."""
        _check_features(features, self.in_channels)
        x = _resize_to(features, self.input_resolution, self.antialias)
        x, img = self.block0(x, x[:, :3])
        return self.block1(x, img)[1]

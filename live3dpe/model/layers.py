"""Reusable blocks of the 3DPE encoders: SegFormer (MiT) and ViT transformer pieces.

Token grids are row-major: token t of an H x W grid is pixel (t // W, t % W). Leaf names
(`q`, `kv`, `sr`, `fc1`, `dwconv`, `qkv`, ...) follow the usual SegFormer / timm naming so
the checkpoint importer only needs prefix rules.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def grid_to_tokens(x: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, H*W, C] (row-major tokens)."""
    return x.flatten(2).transpose(1, 2)


def tokens_to_grid(tokens: Tensor, height: int, width: int) -> Tensor:
    """[B, H*W, C] -> [B, C, H, W]; inverse of `grid_to_tokens`."""
    b, n, c = tokens.shape
    if n != height * width:
        raise ValueError(f"{n} tokens cannot form a {height}x{width} grid")
    return tokens.transpose(1, 2).reshape(b, c, height, width)


def sincos_pos_embed_2d(dim: int, grid_size: int, cls_token: bool = True) -> Tensor:
    """Fixed 2-D sine-cosine position table of MAE: [1, (1 if cls_token) + grid_size**2, dim].

    The first half of the channels encodes the column index, the second half the row index;
    each half is [sin(p * w_k), cos(p * w_k)] with w_k = 10000^(-k / (dim/4)). The cls row is 0.
    Computed in float64 and rounded once, so it matches the official numpy table to float32 precision.
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs dim divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    pos = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")

    def encode(p: Tensor) -> Tensor:
        angles = p.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([encode(cols), encode(rows)], dim=1)
    if cls_token:
        table = torch.cat([table.new_zeros(1, dim), table], dim=0)
    return table.to(torch.float32).unsqueeze(0)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with overlapping windows, then LayerNorm over channels (SegFormer)."""

    def __init__(self, in_channels: int, dim: int, kernel_size: int = 7, stride: int = 4):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size, stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """[B, C_in, H, W] -> (tokens [B, H'*W', dim], (H', W'))."""
        x = self.proj(x)
        return self.norm(grid_to_tokens(x)), (x.shape[-2], x.shape[-1])


class SpatialReductionAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a grid shrunk by `sr_ratio`.

    Shrinking K/V (a stride-r conv + LayerNorm) keeps attention affordable on large token grids.
    """

    def __init__(self, dim: int, heads: int, sr_ratio: int = 1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: [B, N, dim] tokens of an hw grid -> [B, N, dim]."""
        b, n, c = x.shape
        head_dim = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, head_dim).transpose(1, 2)
        source = x
        if self.sr_ratio > 1:
            source = self.norm(grid_to_tokens(self.sr(tokens_to_grid(x, *hw))))
        k, v = self.kv(source).reshape(b, -1, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """Linear -> depthwise 3x3 conv on the token grid -> GELU -> Linear (SegFormer Mix-FFN).

    The depthwise conv gives the transformer positional information without a position table.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        """x: [B, N, dim] -> [B, N, dim]."""
        x = self.fc1(x)
        x = grid_to_tokens(self.dwconv(tokens_to_grid(x, *hw)))
        return self.fc2(F.gelu(x))


class MiTBlock(nn.Module):
    """Pre-norm SegFormer block: x += Attn(LN x); x += MixFFN(LN x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, sr_ratio: int = 1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SpatialReductionAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = x + self.attn(self.norm1(x), hw)
        return x + self.mlp(self.norm2(x), hw)


class MiTStage(nn.Module):
    """Stride-2 overlapping patch embed, MiT blocks, PixelShuffle(2).

    Resolution in = resolution out; channels become dim / 4. This is how 3DPE's F and E_t
    run a transformer on a CNN feature map (paper Sec. 3, Fig. 3).
    """

    def __init__(self, in_channels: int, dim: int, depth: int, heads: int, mlp_ratio: int, sr_ratio: int = 1):
        super().__init__()
        if dim % 4:
            raise ValueError(f"MiTStage dim must be divisible by 4 for PixelShuffle(2), got {dim}")
        self.patch_embed = OverlapPatchEmbed(in_channels, dim, kernel_size=7, stride=2)
        self.blocks = nn.ModuleList(MiTBlock(dim, heads, mlp_ratio, sr_ratio) for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, dim/4, H, W] (H, W even)."""
        tokens, hw = self.patch_embed(x)
        for block in self.blocks:
            tokens = block(tokens, hw)
        return F.pixel_shuffle(tokens_to_grid(tokens, *hw), 2)


class ViTAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm layout [q | k | v])."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, N, dim] -> [B, N, dim]."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class ViTMlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm ViT block (timm / MAE), LayerNorm eps 1e-6 as in MAE."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = ViTAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = ViTMlp(dim, dim * mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def key_padding_mask(key_mask: Tensor, batch: int, keys: int) -> tuple[Tensor, Tensor]:
    """A batch's prompt-token mask [B or 1, N] (True = a real token) -> the SDPA boolean mask
    [B or 1, 1, N] over the keys, and which samples have a prompt at all [B or 1].

    Padded keys get exactly zero attention weight, so a prompt padded to a longer batch's token
    count attends as it does alone (Eq. 2's softmax runs over its own tokens only). A sample with no
    real token would have an all -inf row (NaN): it attends to every key instead, and the caller
    replaces its result by the prompt-free path's."""
    if key_mask.dtype != torch.bool or key_mask.ndim != 2 or key_mask.shape[0] not in (1, batch) or key_mask.shape[1] != keys:
        raise ValueError(f"prompt mask must be bool [1 or {batch}, {keys}], got {key_mask.dtype} {tuple(key_mask.shape)}")
    present = key_mask.any(1)
    return (key_mask | ~present[:, None])[:, None, :], present


def check_image_batch(x: Tensor, name: str, channels: tuple[int, ...], size: int) -> None:
    """Raise ValueError unless x is a finite float [B, C, size, size] with C in `channels`."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be [B, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[1] not in channels:
        raise ValueError(f"{name} must have {' or '.join(map(str, channels))} channels, got {x.shape[1]}")
    if tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"{name} must be {size}x{size} (no implicit resizing), got {x.shape[-2]}x{x.shape[-1]}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    # A data-dependent check would split a compiled graph; `Editor` checks before compiled code.
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf")


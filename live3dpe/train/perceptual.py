"""Optional perceptual losses that need pretrained weights: used only when supplied locally.

LPIPS (AlexNet variant, Zhang et al. 2018): the network is defined here; its weights come
from one local safetensors file with the `lpips` package's key names (`net.slice{1..5}.N.*`
for the AlexNet convs, `lin{0..4}.model.1.weight` for the learned channel weights), e.g.
converted once from an existing installation. Without a file the trainers fall back to the
weight-free SSIM term and say so in the log. No identity (face-recognition) loss is built
in: its network is not part of this package.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

# (in, out, kernel, stride, padding) of AlexNet's five convolutions, and which slice holds them
_ALEX = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
_SLICE_INDEX = ((1, 0), (2, 3), (3, 6), (4, 8), (5, 10))  # (slice, layer index) as in `lpips`
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class LPIPS(nn.Module):
    """Learned perceptual distance between [-1, 1] images [B, 3, H, W] -> [B]."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, s, p) for i, o, k, s, p in _ALEX)
        self.lins = nn.ModuleList(nn.Conv2d(c[1], 1, 1, bias=False) for c in _ALEX)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def _features(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        feats = []
        for k, conv in enumerate(self.convs):
            if k in (1, 2):  # AlexNet pools before the second and third convolutions
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            feats.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return feats

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        fa, fb = self._features(a), self._features(b)
        return sum(lin((x - y) ** 2).mean((2, 3)) for lin, x, y in zip(self.lins, fa, fb)).flatten()

    @classmethod
    def from_file(cls, path: str | Path) -> LPIPS:
        """Load weights from a safetensors file with the `lpips` package's key names."""
        from safetensors.torch import load_file

        state = load_file(str(path))
        net = cls()
        mapped = {}
        for k, (slice_no, idx) in enumerate(_SLICE_INDEX):
            for p in ("weight", "bias"):
                mapped[f"convs.{k}.{p}"] = state[f"net.slice{slice_no}.{idx}.{p}"]
            mapped[f"lins.{k}.weight"] = state[f"lin{k}.model.1.weight"]
        net.load_state_dict({**mapped, "shift": net.shift, "scale": net.scale})
        return net


def load_lpips(path: str | Path | None) -> LPIPS | None:
    """LPIPS from a local file, or None with a logged note (training then uses SSIM only)."""
    if path is None:
        log.info("no LPIPS weights given: perceptual term = weight-free SSIM; identity loss unavailable")
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(f"LPIPS weights {path} not found")
    return LPIPS.from_file(path)

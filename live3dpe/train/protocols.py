"""The two teachers 3DPE distils from, as interfaces the trainer is written against.

`Teacher2D` is the 2D editor (InstructPix2Pix in the paper): it produces the edited
pseudo-label at the input view. `Prior3D` is the frozen reconstruction path (Live3D):
it lifts an image to a triplane and renders it anywhere. The synthetic world implements
both with ground truth; `teachers.py` wraps the real ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor


@dataclass
class MultiView:
    """What a 3D prior says about an image: renders at the requested cameras.

    images [B, V, 3, S, S] in [-1, 1], depths [B, V, 1, r, r] along the ray,
    triplane [B, 3C, R, R] when the prior has one (the synthetic world does not).
    """

    images: Tensor
    depths: Tensor
    triplane: Tensor | None = None
    raw_images: Tensor | None = None


@runtime_checkable
class Teacher2D(Protocol):
    """A 2D image editor: image [B, 3, H, W] in [-1, 1] + instruction -> edited image, same shape."""

    def edit(self, image: Tensor, instruction: str) -> Tensor: ...


@runtime_checkable
class Prior3D(Protocol):
    """A frozen image-to-3D model: image [B, 3, H, W] at camera `label` [B, 25], novel cameras [B, V, 25]."""

    def views(self, image: Tensor, label: Tensor, novel: Tensor) -> MultiView: ...

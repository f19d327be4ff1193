"""Values that cross module boundaries (see DESIGN.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor


@dataclass(frozen=True)
class PromptEmbedding:
    """Prompt tokens in the space the cross-attention reads (Eq. 2): [1, N, ref_dim].

    `key` identifies the prompt (text or image hash plus encoder) so callers can cache.
    """

    tokens: Tensor
    source: Literal["text", "image"]
    key: str


@dataclass(frozen=True)
class Features:
    """The prompt-independent encoder features (the frozen prior's part): `high` from E_high and
    `f` from E_low's transformer F, [B, C, R/4, R/4] each. Any prompt can then be fused in
    (cross-attention, Eq. 2, and E_t, Eq. 3) without encoding the image again, and a pipeline
    can run the two halves in separate stages."""

    high: Tensor
    f: Tensor


@dataclass(frozen=True)
class Planes:
    """A triplane [B, 3 * C, R, R]; channel k belongs to plane k // C (CONVENTIONS.md §5)."""

    tensor: Tensor

    @property
    def resolution(self) -> int:
        return self.tensor.shape[-1]

    def detach(self) -> Planes:
        return Planes(self.tensor.detach())


@dataclass
class RenderOutput:
    """What the renderer produces for one batch of cameras.

    image: [B, 3, S, S] super-resolved, in [-1, 1] (not clamped);
    image_raw: [B, 3, R, R]; depth: [B, 1, R, R] (along the ray); features: [B, C, R, R];
    weights: [B, R*R, samples - 1, 1] per-sample weights (for training and depth-band sampling).
    """

    image: Tensor
    image_raw: Tensor
    depth: Tensor
    features: Tensor
    weights: Tensor | None = None

"""Values that cross module boundaries (see DESIGN.md)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from torch import Tensor


@dataclass(frozen=True)
class PromptEmbedding:
    """Prompt tokens in the space the cross-attention reads (Eq. 2): [1, N, ref_dim].

    `key` identifies the prompt (text or image hash plus encoder) so callers can cache.
    `colour`: an image prompt's colour statistics [1, 6] (see appearance.reference_colour), read
    by the appearance editor; None for text.
    """

    tokens: Tensor
    source: Literal["text", "image"]
    key: str
    colour: Tensor | None = None


@dataclass(frozen=True)
class Guide:
    """The input view carried into 3D (appearance route, `ModelConfig.appearance_channels > 0`).

    image: the aligned input crop at full resolution [B, 3, G, G] in [-1, 1] (G >= the encoder's
    input resolution); label: the camera that saw it [B, 25]; edit: the prompt's colour-transform
    field in the input image's coordinates [B, 12, h, w] (see appearance.apply_colour_transform),
    None for no edit. Rendering re-projects each visible surface point into this image.
    """

    image: Tensor
    label: Tensor
    edit: Tensor | None = None

    def repeat_interleave(self, repeats: int) -> Guide:
        """Each item `repeats` times in a row: one guide per rendered view of a person."""
        return Guide(*(None if t is None else t.repeat_interleave(repeats, 0) for t in (self.image, self.label, self.edit)))

    def expand(self, batch: int) -> Guide:
        """A one-item guide broadcast to `batch` items without copying (one input, many cameras)."""
        return Guide(*(None if t is None else t.expand(batch, *t.shape[1:]) for t in (self.image, self.label, self.edit)))


@dataclass(frozen=True)
class Features:
    """The prompt-independent encoder features (the frozen prior's part): `high` from E_high and
    `f` from E_low's transformer F, [B, C, R/4, R/4] each. Any prompt can then be fused in
    (cross-attention, Eq. 2, and E_t, Eq. 3) without encoding the image again, and a pipeline
    can run the two halves in separate stages. On the appearance route `high` and `f` may be None
    (`Editor.encode_features(..., geometry=False)`): the guide alone makes the input camera's image."""

    high: Tensor | None
    f: Tensor | None
    guide: Guide | None = None


@dataclass(frozen=True)
class Planes:
    """A triplane [B, 3 * C, R, R]; channel k belongs to plane k // C (CONVENTIONS.md §5).
    tensor None: no geometry was computed (appearance route); such planes show the input camera only."""

    tensor: Tensor | None
    guide: Guide | None = None

    @property
    def resolution(self) -> int:
        if self.tensor is None:
            raise ValueError("planes without geometry have no triplane resolution")
        return self.tensor.shape[-1]

    def detach(self) -> Planes:
        return self if self.tensor is None else dataclasses.replace(self, tensor=self.tensor.detach())

    def with_tensor(self, tensor: Tensor) -> Planes:
        """The same planes (and guide) with a new triplane tensor, e.g. after temporal smoothing."""
        return dataclasses.replace(self, tensor=tensor)


@dataclass
class RenderOutput:
    """What the renderer produces for one batch of cameras.

    image: [B, 3, S, S] super-resolved (or guided: re-projected input, S = guide size), in [-1, 1] (not clamped);
    image_raw: [B, 3, R, R]; depth: [B, 1, R, R] (along the ray); features: [B, C, R, R];
    weights: [B, R*R, samples - 1, 1] per-sample weights (for training and depth-band sampling).
    """

    image: Tensor
    image_raw: Tensor
    depth: Tensor
    features: Tensor
    weights: Tensor | None = None

"""Values that cross module boundaries (see DESIGN.md)."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor


def _cat(parts: Sequence[Tensor | None], what: str) -> Tensor | None:
    """Concatenate along the batch; all None -> None, a mix is an error (they cannot share a batch).

    An inference tensor like every `Editor` output: a compiled graph is guarded on the kind of
    tensor, and would recompile for a batch made outside inference mode."""
    if all(t is None for t in parts):
        return None
    if any(t is None for t in parts):
        raise ValueError(f"cannot concatenate {what} with and without a tensor (e.g. features with and without geometry)")
    with torch.inference_mode():
        return torch.cat(list(parts))


def _split(t: Tensor | None, sizes: int | Sequence[int], count: int) -> Sequence[Tensor | None]:
    return (None,) * count if t is None else t.split(sizes)


def _split_count(batch: int, sizes: int | Sequence[int]) -> int:
    if isinstance(sizes, int):
        return -(-batch // sizes)
    if sum(sizes) != batch:
        raise ValueError(f"split sizes {list(sizes)} do not add up to the batch of {batch}")
    return len(sizes)


@dataclass(frozen=True)
class PromptEmbedding:
    """Prompt tokens in the space the cross-attention reads (Eq. 2): [1, N, ref_dim].

    `key` identifies the prompt (text or image hash plus encoder) so callers can cache.
    `colour`: an image prompt's colour statistics [1, 7] (see appearance.reference_colour), read
    by the appearance editor; None for text.
    """

    tokens: Tensor
    source: Literal["text", "image"]
    key: str
    colour: Tensor | None = None


@dataclass(frozen=True)
class PromptBatch:
    """One prompt (or none) per sample of a batch, padded to one token count so they share one
    cross-attention call (Eq. 2): `Editor.stack_prompts`.

    tokens [B, N, ref_dim] (zeros past each prompt's own length); mask [B, N] bool, True = a real
    token: padded keys get no attention weight, so each sample comes out as with its prompt alone;
    a row with no True is a sample without prompt. colour [B, 7]: image prompts' colour statistics,
    zeros for the others (what the appearance editor reads for a text prompt), or None when no
    sample has one. keys: each sample's `PromptEmbedding.key`, None for no prompt.
    """

    tokens: Tensor
    mask: Tensor
    colour: Tensor | None
    keys: tuple[str | None, ...]

    def __len__(self) -> int:
        return self.tokens.shape[0]


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

    @property
    def batch(self) -> int:
        return self.image.shape[0]

    @classmethod
    def cat(cls, parts: Sequence[Guide]) -> Guide:
        """Guides of several requests as one batch. A part without edit gets the zero field there
        (the identity, appearance.apply_colour_transform) when another part has one."""
        edits = [g.edit for g in parts]
        edit = None
        if any(e is not None for e in edits):
            like = next(e for e in edits if e is not None)
            with torch.inference_mode():
                edit = _cat([like.new_zeros(g.batch, *like.shape[1:]) if g.edit is None else g.edit for g in parts], "edits")
        return cls(_cat([g.image for g in parts], "guides"), _cat([g.label for g in parts], "guides"), edit)

    def split(self, sizes: int | Sequence[int] = 1) -> list[Guide]:
        """Per-request slices (views) of a batch, as `torch.split`: default one per sample."""
        n = _split_count(self.batch, sizes)
        return [Guide(*t) for t in zip(*(_split(t, sizes, n) for t in (self.image, self.label, self.edit)), strict=True)]


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

    @property
    def batch(self) -> int:
        return self.high.shape[0] if self.high is not None else self.guide.batch

    @classmethod
    def cat(cls, parts: Sequence[Features]) -> Features:
        """Features of several requests (streams) as one batch for one `Editor.fuse` call. All parts
        must agree on geometry (high/f present or not) and on having a guide."""
        if not parts:
            raise ValueError("nothing to concatenate")
        guides = [p.guide for p in parts]
        if any(g is None for g in guides) and not all(g is None for g in guides):
            raise ValueError("cannot concatenate features with and without a guide")
        guide = None if guides[0] is None else Guide.cat(guides)
        return cls(_cat([p.high for p in parts], "features"), _cat([p.f for p in parts], "features"), guide)

    def split(self, sizes: int | Sequence[int] = 1) -> list[Features]:
        """Per-request slices (views) of a batch, as `torch.split`: default one per sample."""
        n = _split_count(self.batch, sizes)
        guides = (None,) * n if self.guide is None else self.guide.split(sizes)
        return [Features(*t) for t in zip(_split(self.high, sizes, n), _split(self.f, sizes, n), guides, strict=True)]


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

    @property
    def batch(self) -> int:
        return self.tensor.shape[0] if self.tensor is not None else self.guide.batch

    @classmethod
    def cat(cls, parts: Sequence[Planes]) -> Planes:
        """Planes of several requests (streams) as one batch for one `Editor.render_image` call.
        All parts must agree on geometry (tensor present or None) and on having a guide."""
        if not parts:
            raise ValueError("nothing to concatenate")
        guides = [p.guide for p in parts]
        if any(g is None for g in guides) and not all(g is None for g in guides):
            raise ValueError("cannot concatenate planes with and without a guide")
        return cls(_cat([p.tensor for p in parts], "planes"), None if guides[0] is None else Guide.cat(guides))

    def split(self, sizes: int | Sequence[int] = 1) -> list[Planes]:
        """Per-request slices (views) of a batch, as `torch.split`: default one per sample."""
        n = _split_count(self.batch, sizes)
        guides = (None,) * n if self.guide is None else self.guide.split(sizes)
        return [Planes(*t) for t in zip(_split(self.tensor, sizes, n), guides, strict=True)]

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
    weights: [B, R*R, samples - 1, 1] per-sample weights (for training and depth-band sampling);
    surface: [B, 1, R, R] the depth a guide re-projects along (renderer.TriplaneRenderer._surface).
    """

    image: Tensor
    image_raw: Tensor
    depth: Tensor
    features: Tensor
    weights: Tensor | None = None
    surface: Tensor | None = None

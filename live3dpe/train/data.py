"""Training batches from an EG3D-layout dataset with synthetic extras (`live3dpe data synth`).

The whole dataset is held in memory (tiny-preset datasets are a few hundred MB at most)
so a step costs no I/O. Stage 1 pairs each input view with another stored view of the
same person; stage 2 draws one style and one prompt (text phrasing or reference image)
per batch, with the dataset's `edited` image as the 2D teacher's pseudo-label.
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from live3dpe.model.image_prompt import preprocess_reference
from live3dpe.model.text_prompt import DEFAULT_TEXT_BACKEND, TextBackend, make_text_backend
from live3dpe.synth.dataset import EG3DDataset

from .augment import apply_recolour, random_recolour
from .batches import EditBatch, PriorBatch, Prompt

log = logging.getLogger(__name__)


class TextFeatureCache:
    """Frozen text back-end features per phrase, computed once (the back-end never trains)."""

    def __init__(self, backend: TextBackend | str = DEFAULT_TEXT_BACKEND):
        self.backend = make_text_backend(backend) if isinstance(backend, str) else backend
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}

    def __call__(self, text: str) -> tuple[Tensor, Tensor]:
        if text not in self._cache:
            f = self.backend.encode(text)
            self._cache[text] = (f.tokens, f.pooled)
        return self._cache[text]


def _depth_and_mask(items: list[dict], depth_key: str, mask_key: str) -> tuple[Tensor, Tensor]:
    """Stacked depth (background inf -> 0; the mask excludes it from losses) and mask."""
    depth = torch.stack([it[depth_key] for it in items])
    return torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth)), torch.stack([it[mask_key] for it in items])


class SynthDataSource:
    """In-memory sampler over a synthetic EG3D dataset.

    styles: restrict to these styles (e.g. keep one out for the customization benchmark).
    image_prompt_prob: chance that a stage-2 batch uses an image prompt instead of text.
    prior_styled_prob: chance that a stage-1 person is shown in their dataset style (the
    edited renders, every view, with the edited geometry) instead of unedited. A prior that
    has only seen plain people lifts a golden or blue face to a plain one (measured), and
    stage 2 distils from the prior applied to edited images, so it must know such faces.
    """

    def __init__(
        self,
        path: str | Path,
        ref_resolution: int,
        text: TextFeatureCache | None = None,
        styles: list[str] | None = None,
        image_prompt_prob: float = 0.5,
        phrases: Literal["train", "heldout"] = "train",
        prior_styled_prob: float = 0.0,
    ):
        if not 0.0 <= prior_styled_prob <= 1.0:
            raise ValueError(f"prior_styled_prob must be in [0, 1], got {prior_styled_prob}")
        ds = EG3DDataset(path, extras=True)
        items = [ds[i] for i in range(len(ds))]
        keep = [i for i, it in enumerate(items) if styles is None or it["style"] in styles]
        if not keep:
            raise ValueError(f"{path}: no samples of styles {styles}")
        items = [items[i] for i in keep]
        self.image = torch.stack([it["image"] for it in items])
        self.label = torch.stack([it["label"] for it in items])
        self.edited = torch.stack([it["edited"] for it in items])
        self.depth, self.mask = _depth_and_mask(items, "depth", "mask")
        self.prior_styled_prob = prior_styled_prob
        if prior_styled_prob > 0:
            self.edited_depth, self.edited_mask = _depth_and_mask(items, "edited_depth", "edited_mask")
        self.style = [it["style"] for it in items]
        self.person = torch.tensor([it["person"] for it in items])
        self._same_person: dict[int, list[int]] = defaultdict(list)
        for i, p in enumerate(self.person.tolist()):
            self._same_person[p].append(i)
        self.by_style: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(self.style):
            self.by_style[s].append(i)
        self.style_names = sorted(self.by_style)
        recorded = json.loads(ds.files.read("synth.json"))["styles"]
        self.phrases = {n: recorded[n][phrases] for n in self.style_names}
        self.references = {
            n: preprocess_reference(ds.prompts[n], ref_resolution) for n in self.style_names if n in ds.prompts and len(ds.prompts[n])
        }
        self.text = text
        self.image_prompt_prob = image_prompt_prob if self.references else 0.0
        if text is None:
            self.image_prompt_prob = 1.0 if self.references else 0.0
        log.info("loaded %d samples, %d people, styles %s from %s", len(items), len(self._same_person), self.style_names, path)

    def __len__(self) -> int:
        return self.image.shape[0]

    def prior_batch(self, batch: int, generator: torch.Generator, views: int = 2) -> PriorBatch:
        """Input views plus ground truth at other stored views of the same people.

        views=2: the input view and one random view of the person (camera augmentation
        comes from the dataset's random cameras); views=1: only the random view (which
        may be the input view), halving the rendering cost of a step.
        """
        if views not in (1, 2):
            raise ValueError(f"views must be 1 or 2, got {views}")
        idx = torch.randint(len(self), (batch,), generator=generator)
        other = []
        for i in idx.tolist():
            same = self._same_person[int(self.person[i])]
            other.append(same[int(torch.randint(len(same), (1,), generator=generator))])
        chosen = torch.tensor(other)[:, None] if views == 1 else torch.stack([idx, torch.tensor(other)], dim=1)
        plain = PriorBatch(
            image=self.image[idx],
            label=self.label[idx],
            view_labels=self.label[chosen],
            view_images=self.image[chosen],
            view_depths=self.depth[chosen],
            view_masks=self.mask[chosen],
        )
        if self.prior_styled_prob == 0:  # no extra random draws: the plain stream stays as it was
            return plain
        styled = torch.rand(batch, generator=generator) < self.prior_styled_prob

        def pick(unedited: Tensor, edited: Tensor) -> Tensor:
            return torch.where(styled.reshape(-1, *[1] * (unedited.ndim - 1)), edited, unedited)

        return replace(
            plain,
            image=pick(plain.image, self.edited[idx]),
            view_images=pick(plain.view_images, self.edited[chosen]),
            view_depths=pick(plain.view_depths, self.edited_depth[chosen]),
            view_masks=pick(plain.view_masks, self.edited_mask[chosen]),
        )

    def prompt(self, style: str, kind: str, generator: torch.Generator) -> Prompt:
        """A prompt for `style`: a phrasing through the text cache, or one of its reference images."""
        if kind == "image":
            refs = self.references[style]
            return Prompt("image", style, reference=refs[int(torch.randint(len(refs), (1,), generator=generator))][None])
        phrases = self.phrases[style]
        text = phrases[int(torch.randint(len(phrases), (1,), generator=generator))]
        tokens, pooled = self.text(text)
        return Prompt("text", style, text, tokens, pooled)

    def edit_batch(self, batch: int, generator: torch.Generator) -> EditBatch:
        """One style, one prompt, `batch` people in that style (with replacement)."""
        style = self.style_names[int(torch.randint(len(self.style_names), (1,), generator=generator))]
        kind = "image" if float(torch.rand(1, generator=generator)) < self.image_prompt_prob else "text"
        pool = self.by_style[style]
        idx = torch.tensor(pool)[torch.randint(len(pool), (batch,), generator=generator)]
        return EditBatch(self.image[idx], self.label[idx], self.edited[idx], self.prompt(style, kind, generator))


class RecolourSource:
    """Stage-2 batches of a source, plus a share `prob` of reference-following batches.

    Such a batch applies one random colour transform (`augment.random_recolour`) to `batch` plain
    people (the target) and to another person (the image prompt). The dataset's references show
    only its own styles, so an editor trained on them alone recognises a style instead of reading
    the reference's colour, and a real reference (a painting, a statue, a clown) barely moves the
    output. The transform is only learnable from the reference, whatever its content."""

    def __init__(self, source: SynthDataSource, prob: float, ref_resolution: int, strength: float = 1.0) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"recolour prob must be in [0, 1], got {prob}")
        self.source, self.prob, self.ref_resolution, self.strength = source, prob, ref_resolution, strength

    def edit_batch(self, batch: int, generator: torch.Generator) -> EditBatch:
        if float(torch.rand(1, generator=generator)) >= self.prob:
            return self.source.edit_batch(batch, generator)
        idx = torch.randint(len(self.source), (batch + 1,), generator=generator)
        matrix, offset = random_recolour(1, self.strength, generator)
        image = self.source.image[idx[:batch]]
        edited = apply_recolour(image, matrix.expand(batch, -1, -1), offset.expand(batch, -1))
        ref = apply_recolour(self.source.image[idx[batch:]], matrix, offset)
        ref_u8 = ((ref + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        prompt = Prompt("image", "recolour", reference=preprocess_reference(ref_u8, self.ref_resolution))
        return EditBatch(image, self.source.label[idx[:batch]], edited, prompt)

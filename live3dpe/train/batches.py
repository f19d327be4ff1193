"""What one training step consumes. Sources (synthetic world, dataset on disk) produce these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor


@dataclass
class PriorBatch:
    """Stage 1: an input view and ground truth at V views of the same people.

    image [B, 3, S, S] in [-1, 1] at camera label [B, 25]; views: labels [B, V, 25],
    images [B, V, 3, S, S], depths [B, V, 1, S, S] along the ray, masks [B, V, 1, S, S]
    (1 on the person). View 0 is the input view.
    """

    image: Tensor
    label: Tensor
    view_labels: Tensor
    view_images: Tensor
    view_depths: Tensor
    view_masks: Tensor


@dataclass
class Prompt:
    """One prompt shared by a whole batch (token counts differ between prompts).

    text: `text_tokens` [1, L, D] and `text_pooled` [1, D] from the frozen text back-end;
    image: `reference` [1, 3, R, R] ImageNet-normalised for the MAE encoder.
    """

    kind: Literal["text", "image"]
    style: str
    text: str = ""
    text_tokens: Tensor | None = None
    text_pooled: Tensor | None = None
    reference: Tensor | None = None


@dataclass
class EditBatch:
    """Stage 2 / customization: inputs, one prompt, and the 2D teacher's pseudo-label.

    image [B, 3, S, S] at label [B, 25]; edited [B, 3, S, S] = Teacher2D output at the input view.
    """

    image: Tensor
    label: Tensor
    edited: Tensor
    prompt: Prompt

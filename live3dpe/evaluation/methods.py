"""The methods compared in Table 1: input image (+ prompt) -> renders at the evaluation cameras.

- `3dpe`: this editor, the prompt injected into the encoder (Eq. 2-3).
- `2d_then_3d`: edit the frame in 2D first (the teacher), then lift it with the 3D prior
  (`encode(x_edited, None)`): the "2D editor + reconstruction" baseline.
- `reconstruction`: the 3D prior on the unedited input, i.e. no edit at all.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from live3dpe.model.editor import Editor
from live3dpe.model.types import Planes, PromptEmbedding


@dataclass(frozen=True)
class Views:
    """images uint8 [V, S, S, 3]; depths float32 [V, S, S] along the ray (upsampled from the
    neural resolution); encode_ms / render_ms: wall time of the encode and of all V renders."""

    images: np.ndarray
    depths: np.ndarray
    encode_ms: float
    render_ms: float

    @property
    def edit_ms(self) -> float:
        """One edited frame: encode plus one view."""
        return self.encode_ms + self.render_ms / len(self.images)


def render_views(editor: Editor, planes: Planes, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Render `planes` at each label (one at a time, as a live filter does) -> images, depths, ms."""
    images, depths = [], []
    t0 = time.perf_counter()
    for label in labels:
        out = editor.render(planes, torch.as_tensor(label, dtype=torch.float32))
        images.append(editor.postprocess(out.image)[0])
        depths.append(out.depth[0, 0].float().cpu().numpy())
    ms = (time.perf_counter() - t0) * 1e3
    size = images[0].shape[0]
    depths = [cv2.resize(d, (size, size), interpolation=cv2.INTER_LINEAR) for d in depths]
    return np.stack(images), np.stack(depths).astype(np.float32), ms


def encode_and_render(editor: Editor, image: np.ndarray, prompt: PromptEmbedding | None, labels: np.ndarray, input_label: np.ndarray) -> Views:
    """Every method is this call: 3dpe = (input, prompt); 2d_then_3d = (2D-edited input, None) --
    the 2D edit's own cost is not included; reconstruction = (input, None). input_label: the
    camera [25] that saw `image`."""
    t0 = time.perf_counter()
    planes = editor.encode(editor.preprocess(image), prompt, torch.as_tensor(input_label, dtype=torch.float32))
    encode_ms = (time.perf_counter() - t0) * 1e3
    images, depths, render_ms = render_views(editor, planes, labels)
    return Views(images, depths, encode_ms, render_ms)

"""The model runner: the one object the pipeline reaches the model through.

Every request is per sample and self-contained (a crop and its camera, features and a prompt,
planes and a camera), and per-stream state (smoothing, prompt cache, tracking) stays in the
stages (a whole-frame `edit` takes the stream's smoother along), so a runner is free to gather
requests of several streams into one batch. `ModelRunner` runs them inline in the calling
thread; a batching runner keeps the same methods.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from live3dpe.model.cameras import Camera
    from live3dpe.model.editor import Editor
    from live3dpe.model.types import Features, Planes, PromptEmbedding
    from live3dpe.tracking import PlanesSmoother


def pipeline_torch_threads(stages: int = 3) -> int:
    """Torch CPU threads for each of `stages` model stages sharing the machine with the rest.

    They all run at the same time; pools as large as the machine oversubscribe the cores and
    their spinning threads slow everything down (10x measured on 2 cores)."""
    return max(1, (os.cpu_count() or 1) // stages)


class ModelRunner:
    """Runs an `Editor` for the stages, inline in the calling thread.

    On CUDA each calling thread gets its own stream, so the stages' model work overlaps, and a
    call returns only once its results are complete (the next stage, another thread on another
    stream, may use them at once). On the CPU each calling thread uses `cpu_threads` torch
    threads (default `pipeline_torch_threads()`; the setting is per thread).

    `fused`: whether the stages should reach the model with one `edit` call per frame rather
    than `encode`, `fuse` and `render` in stages of their own: worth it for a runner whose every
    call is a round trip (Ray Serve), not for this one, whose stages overlap on frames in turn."""

    fused = False

    def __init__(self, editor: Editor, cpu_threads: int | None = None) -> None:
        self.editor = editor
        self.device = torch.device(getattr(editor, "device", "cpu"))
        self.cpu_threads = (cpu_threads or pipeline_torch_threads()) if self.device.type == "cpu" else None
        self._local = threading.local()

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Context for torch work in the calling thread (the runner's own calls and a stage's
        small per-stream tensor work such as smoothing)."""
        local = self._local
        if self.cpu_threads and not getattr(local, "threads_set", False):
            torch.set_num_threads(self.cpu_threads)
            local.threads_set = True
        if self.device.type != "cuda":
            with torch.inference_mode():
                yield
            return
        stream = getattr(local, "stream", None)
        if stream is None:
            stream = local.stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))  # inputs made elsewhere are complete
        with torch.inference_mode(), torch.cuda.stream(stream):
            yield
        stream.synchronize()

    # what the stages need to know ------------------------------------------------------------
    @property
    def crop_resolution(self) -> int:
        """The crop size a live frame is aligned at."""
        return self.editor.crop_resolution

    def crop_resolution_for(self, preferred: int) -> int:
        """The crop size for a still, where `preferred` pixels are wanted (see `Editor.crop_resolution_for`)."""
        return self.editor.crop_resolution_for(preferred)

    @property
    def reproduces_input(self) -> bool:
        """Whether the input-view image is the input crop wherever the edit leaves it alone (the
        appearance route re-projects the input), so the compositor may paste all an edit changed."""
        return self.editor.config.appearance_route

    def needs_geometry(self, mode: str) -> bool:
        """Whether a frame shown in `mode` needs the triplane: paste and side-by-side show the
        input camera, which the appearance route makes from the input view alone."""
        return mode == "view" or not self.editor.config.appearance_route

    # requests ----------------------------------------------------------------------------------
    def encode(self, crop: np.ndarray, camera: Camera, geometry: bool = True) -> Features:
        """Aligned crop uint8[S, S, 3] seen by `camera` → prompt-independent features."""
        ed = self.editor
        with self.running():
            return ed.encode_features(ed.preprocess(crop), camera.to(self.device), geometry=geometry)

    def encode_prompt(self, text: str | None = None, image: np.ndarray | None = None) -> PromptEmbedding | None:
        """The prompt embedding; None when neither text nor image is given (reconstruction)."""
        if not text and image is None:
            return None
        with self.running():
            return self.editor.encode_prompt(text=text, image=image)

    def fuse(self, features: Features, prompt: PromptEmbedding | None) -> Planes:
        """Features + prompt → triplanes (cross-attention Eq. 2, E_t Eq. 3)."""
        with self.running():
            return self.editor.fuse(features, prompt)

    def render(self, planes: Planes, camera: Camera) -> np.ndarray:
        """Planes seen by `camera` → the face image uint8[S, S, 3]."""
        ed = self.editor
        with self.running():
            return np.asarray(ed.postprocess(ed.render_image(planes, camera.to(self.device)))[0])

    def edit(self, crop: np.ndarray, camera: Camera, prompt: PromptEmbedding | None, view: Camera, geometry: bool = True,
             smoother: PlanesSmoother | None = None, motion: float = 0.0) -> np.ndarray:  # fmt: skip
        """A frame's whole model part in one call: `encode` the crop seen by `camera`, `fuse`
        `prompt`, smooth with the stream's `smoother` (updated in place; None: smoothing off) at
        `motion`, `render` from `view` → the face image uint8[S, S, 3]."""
        from .batching import batched_edit, raised

        with self.running():
            return raised(batched_edit(self.editor, [(crop, camera, geometry, prompt, view, smoother, motion)])[0])

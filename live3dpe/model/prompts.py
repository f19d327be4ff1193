"""One way to turn a prompt (text or reference image) into the tokens Eq. 2 attends to.

A live stream asks for the prompt embedding every frame; `PromptCache` makes that free
unless the prompt (or the weights that encode it) changed. Keys are
(kind, sha1 of the text or image, back-end, weights version).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .appearance import reference_colour
from .text_prompt import TextBackend
from .types import PromptEmbedding

if TYPE_CHECKING:
    from .network import EditorNet

IMAGE_BACKEND = "mae"


def text_digest(text: str) -> str:
    return hashlib.sha1(text.strip().encode("utf-8")).hexdigest()


def image_digest(image: np.ndarray) -> str:
    """sha1 over shape, dtype and pixels, so equal-looking arrays of other shapes differ."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{a.shape}|{a.dtype}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


class PromptCache:
    """Thread-safe LRU of prompt embeddings. A key is encoded at most once even when several
    threads ask for it at the same moment (a per-key lock serialises them)."""

    def __init__(self, max_entries: int = 32) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, PromptEmbedding] = OrderedDict()
        self._key_locks: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_create(self, key: tuple, make: Callable[[], PromptEmbedding]) -> PromptEmbedding:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:  # another thread may have filled it while we waited
                if key in self._entries:
                    self.hits += 1
                    return self._entries[key]
            try:
                value = make()
            except BaseException:
                with self._lock:
                    self._key_locks.pop(key, None)
                raise
            with self._lock:
                self._key_locks.pop(key, None)
                self.misses += 1
                self._entries[key] = value
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class PromptEncoder:
    """text | image -> `PromptEmbedding` [1, N, ref_dim], cached.

    Text: frozen back-end -> `net.text_prompt` projection. Image: `net.image_prompt` (MAE ViT)
    on the reference preprocessed as the official pipeline does. `weights_version` must change
    whenever the net's weights do, so stale embeddings are never served. A text back-end other
    than the one the net's projection was trained on is refused here, before any prompt.
    """

    def __init__(
        self,
        net: EditorNet,
        text_backend: TextBackend | None,
        weights_version: str,
        cache: PromptCache | None = None,
    ) -> None:
        self.net = net
        projection = getattr(net, "text_prompt", None)
        if text_backend is not None and projection is not None and text_backend.name != projection.backend:
            raise ValueError(
                f"text back-end {text_backend.name!r} given, but this network's text projection was trained "
                f"on {projection.backend!r}; use that one (Editor.load's default) or train with --text-backend"
            )
        self.text_backend = text_backend
        self.weights_version = weights_version
        self.cache = cache or PromptCache()

    def _param(self) -> Tensor:
        return next(self.net.image_prompt.parameters())

    def __call__(self, text: str | None = None, image: np.ndarray | None = None) -> PromptEmbedding:
        if (text is None) == (image is None):
            raise ValueError("give exactly one of text= or image= as the prompt")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"text prompt must be a non-empty string, got {text!r}")
            backend = self._require_text_backend()
            key = ("text", text_digest(text), backend.name, self.weights_version)
            return self.cache.get_or_create(key, lambda: self._encode_text(text, key))
        image = self._check_image(image)
        key = ("image", image_digest(image), IMAGE_BACKEND, self.weights_version)
        return self.cache.get_or_create(key, lambda: self._encode_image(image, key))

    def _require_text_backend(self) -> TextBackend:
        if self.text_backend is None:
            raise RuntimeError("no text back-end configured; load the editor with a text_backend to use text prompts")
        projection = getattr(self.net, "text_prompt", None)
        if projection is None:
            raise RuntimeError("this network has no text-prompt projection (net.text_prompt)")
        if projection.in_dim != self.text_backend.dim:
            raise ValueError(
                f"text back-end {self.text_backend.name!r} gives {self.text_backend.dim}-d tokens but the "
                f"network's text projection expects {projection.in_dim}-d (the model behind that name has changed)"
            )
        return self.text_backend

    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        a = np.asarray(image)
        if a.dtype != np.uint8:
            raise TypeError(f"reference image must be uint8 RGB, got {a.dtype}")
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ValueError(f"reference image must be one [H, W, 3] RGB image, got shape {a.shape}")
        return a

    def _encode_text(self, text: str, key: tuple) -> PromptEmbedding:
        features = self.text_backend.encode(text)
        p = self._param()
        with torch.inference_mode():
            tokens = self.net.text_prompt(features.tokens.to(p), features.pooled.to(p))
        return PromptEmbedding(tokens, "text", ":".join(key))

    def _encode_image(self, image: np.ndarray, key: tuple) -> PromptEmbedding:
        p = self._param()
        x = self.net.image_prompt.preprocess(image).to(p)
        with torch.inference_mode():
            tokens = self.net.image_prompt(x)
        return PromptEmbedding(tokens, "image", ":".join(key), colour=reference_colour(x))

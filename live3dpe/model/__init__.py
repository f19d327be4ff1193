"""The 3DPE model: presets, the camera convention, shared types and the `Editor` inference API.

`import live3dpe.model` stays light (torch only): the network, checkpoint I/O and the
editor are imported on first use.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .cameras import Camera
from .config import ModelConfig, get_preset
from .types import Features, Planes, PromptEmbedding, RenderOutput

if TYPE_CHECKING:
    from .checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
    from .editor import Editor
    from .network import EditorNet

_LAZY = {
    "Editor": ".editor",
    "EditorNet": ".network",
    "CheckpointMeta": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
}

__all__ = [
    "Camera",
    "CheckpointMeta",
    "Editor",
    "EditorNet",
    "Features",
    "ModelConfig",
    "Planes",
    "PromptEmbedding",
    "RenderOutput",
    "get_preset",
    "load_checkpoint",
    "save_checkpoint",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""`FaceWork`: one frame and what the pipeline's stages found out about it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from live3dpe.stream.engine import Work

if TYPE_CHECKING:
    from live3dpe.model.types import Features, Planes
    from live3dpe.pose.estimator import FaceObservation


@dataclass
class FaceWork(Work):
    """Filled in stage by stage: pose → `obs`, encode → `features`, fuse → `planes`,
    render → `face` (a fused runner's edit stage: `face` alone), compose → `output`. `reacquired`: the face was (re)found on this frame,
    so per-stream state built on the previous face (smoothed triplanes) must be forgotten."""

    obs: FaceObservation | None = None
    features: Features | None = None
    planes: Planes | None = None
    face: np.ndarray | None = None  # the edited face render, SxSx3 uint8
    reacquired: bool = False

    @property
    def has_face(self) -> bool:
        return self.obs is not None

    @property
    def edited(self) -> bool:
        return self.face is not None and self.failed is None and not self.control.passthrough

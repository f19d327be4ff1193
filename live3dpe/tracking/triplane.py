"""Motion-adaptive smoothing of successive triplanes against flicker.

Per-frame encodings of a still face differ by noise that shows as shimmering texture; an
exponential moving average removes it but ghosts when the face moves. The weight of the new
triplane therefore grows with the measured motion: still -> heavy smoothing, fast -> follow.
A triplane far from the running average (a cut, a new person) replaces it outright.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TriplaneSmoother:
    """EMA over triplanes [B, C, R, R] with new-sample weight
    w = min_weight + (1 - min_weight) * clamp(motion / full_motion, 0, 1).

    motion: any non-negative speed (ObservationFilter's: face sizes per second); full_motion:
    the speed at which no smoothing is left; cut_threshold: relative RMS change
    |new - avg| / |avg| above which the average restarts (None: never).
    """

    min_weight: float = 0.25
    full_motion: float = 0.5
    cut_threshold: float | None = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.min_weight <= 1 or self.full_motion <= 0:
            raise ValueError(f"need 0 < min_weight <= 1 and full_motion > 0, got {self.min_weight}, {self.full_motion}")
        self._avg: Tensor | None = None

    def reset(self) -> None:
        self._avg = None

    @property
    def average(self) -> Tensor | None:
        """The running average (None before the first sample): the whole state."""
        return self._avg

    def weight(self, motion: float) -> float:
        """The new triplane's weight for a given motion."""
        m = min(max(float(motion), 0.0) / self.full_motion, 1.0)
        return self.min_weight + (1.0 - self.min_weight) * m

    @torch.no_grad()
    def __call__(self, planes: Tensor, motion: float) -> Tensor:
        if self._avg is None or self._avg.shape != planes.shape or self._avg.device != planes.device:
            self._avg = planes.detach().clone()
            return planes
        if self.cut_threshold is not None:
            change = torch.linalg.vector_norm(planes - self._avg) / torch.linalg.vector_norm(self._avg).clamp_min(1e-8)
            if change > self.cut_threshold:
                self._avg = planes.detach().clone()
                return planes
        self._avg.lerp_(planes.detach().to(self._avg.dtype), self.weight(motion))
        return self._avg.clone()


class PlanesSmoother:
    """Smooths everything of a `Planes` that shapes the output: the triplane and, on the appearance
    route, the prompt's colour-transform field (`planes.guide.edit`). The field alone decides the
    image at the input camera, so smoothing only the triplane would leave paste mode's flicker as
    it is. Both averages follow the same motion; a cut of the triplane restarts both."""

    def __init__(self, triplane: TriplaneSmoother | None = None) -> None:
        self.triplane = triplane or TriplaneSmoother()
        # the field is near zero for mild edits, so a relative-change cut test would fire on noise
        self.edit = TriplaneSmoother(self.triplane.min_weight, self.triplane.full_motion, cut_threshold=None)
        self.resets = 0  # how often `reset` was called: a copy elsewhere (a Ray replica's) restarts when it changes

    def reset(self) -> None:
        self.triplane.reset()
        self.edit.reset()
        self.resets += 1

    def __call__(self, planes, motion: float):
        """planes: `live3dpe.model.Planes` -> the smoothed `Planes` (its guide's image untouched)."""
        smoothed = planes
        if planes.tensor is not None:  # None: paste mode computed no geometry this frame
            tensor = self.triplane(planes.tensor, motion)
            if tensor is planes.tensor:  # the triplane average (re)started: so does the field's
                self.edit.reset()
            smoothed = planes.with_tensor(tensor)
        guide = planes.guide
        if guide is None or guide.edit is None:
            return smoothed
        return dataclasses.replace(smoothed, guide=dataclasses.replace(guide, edit=self.edit(guide.edit, motion)))

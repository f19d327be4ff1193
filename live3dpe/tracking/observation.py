"""One-Euro smoothing of whole face observations, plus the motion measure for triplanes."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from live3dpe.model.cameras import Camera
from live3dpe.pose.align import crop_from_params, crop_params, invert_affine
from live3dpe.pose.estimator import FaceObservation
from live3dpe.pose.headpose import orbit_label
from live3dpe.pose.procrustes import det3
from live3dpe.tracking.one_euro import OneEuroFilter


@dataclass(frozen=True)
class EuroSettings:
    """One-Euro parameters (Hz, Hz per unit/s, Hz) for one group of values."""

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0

    def make(self) -> OneEuroFilter:
        return OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)


class ObservationFilter:
    """Smooths a stream of observations of one face; `reset()` when the face is lost/re-acquired.

    Filtered, each in its own units: angles (degrees), rotation (matrix entries, re-projected
    onto rotations), translation (cm), crop (centre and log-zoom in crop sizes, angle in
    radians, so one setting fits any frame size) and landmarks (px). The camera label and the
    crop matrices are rebuilt from the filtered values, so they stay consistent.
    `motion` (also written into the returned observation) is the RMS filtered landmark speed
    in face sizes per second: pose, expression and position changes all raise it.
    """

    def __init__(
        self,
        angles: EuroSettings = EuroSettings(1.0, 0.02),
        translation: EuroSettings = EuroSettings(1.0, 0.05),
        crop: EuroSettings = EuroSettings(1.0, 2.0),
        landmarks: EuroSettings = EuroSettings(1.5, 0.01),
    ) -> None:
        self._settings = (angles, translation, crop, landmarks)
        self.motion = 0.0
        self.reset()

    def reset(self) -> None:
        a, t, c, lm = self._settings
        self._angles, self._rotation = a.make(), a.make()
        self._translation, self._crop, self._landmarks = t.make(), c.make(), lm.make()
        self.motion = 0.0

    def __call__(self, obs: FaceObservation, t: float) -> FaceObservation:
        angles = self._angles(np.array([obs.yaw, obs.pitch, obs.roll]), t)
        R = self._rotation(np.asarray(obs.rotation, np.float64), t)
        U, _, Vt = np.linalg.svd(R)
        R = U @ np.diag([1.0, 1.0, det3(U @ Vt)]) @ Vt
        translation = self._translation(np.asarray(obs.translation, np.float64), t)

        size = obs.crop_size
        p = crop_params(obs.crop_affine, size)
        zoom = math.exp(p[2])
        p = self._crop(np.array([p[0] * zoom / size, p[1] * zoom / size, p[2], p[3]]), t)
        zoom = math.exp(p[2])
        affine = crop_from_params(np.array([p[0] * size / zoom, p[1] * size / zoom, p[2], p[3]]), size)

        landmarks = self._landmarks(np.asarray(obs.landmarks, np.float64), t)
        speed = self._landmarks.derivative[:, :2]
        x0, y0, x1, y1 = obs.bbox
        face_size = max(math.hypot(x1 - x0, y1 - y0), 1.0)
        self.motion = float(np.sqrt((speed**2).sum(-1).mean()) / face_size)

        yaw, pitch, roll = (float(v) for v in angles)
        camera = Camera(torch.from_numpy(orbit_label(math.radians(yaw), math.radians(pitch))))
        return dataclasses.replace(
            obs,
            landmarks=landmarks.astype(np.float32),
            rotation=R,
            translation=translation,
            yaw=yaw,
            pitch=pitch,
            roll=roll,
            camera=camera,
            crop_affine=affine.astype(np.float32),
            crop_inverse=invert_affine(affine).astype(np.float32),
            motion=self.motion,
        )

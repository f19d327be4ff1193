"""Facial animation of a built head (jaw and eyelids) and talking-head sequences.

Head motion in a sequence is carried by the camera label, as a pose estimator would
report it; the face itself only opens the jaw and blinks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from live3dpe.model.cameras import DEFAULT_FOV_DEG, intrinsics_from_fov, make_label, yaw_pitch_cam2world
from live3dpe.synth.head import Head

MAX_JAW_ANGLE = 0.32  # radians at jaw_open = 1


@dataclass(frozen=True)
class Expression:
    """jaw_open and blink in [0, 1] (0 = neutral, 1 = mouth fully open / eyes closed)."""

    jaw_open: float = 0.0
    blink: float = 0.0


NEUTRAL = Expression()


def posed_vertices(head: Head, expression: Expression | None) -> np.ndarray:
    """World vertices of `head` with `expression` applied. -> float64 [V, 3]."""
    v = head.mesh.vertices.copy()
    if expression is None or expression == NEUTRAL:
        return v
    if expression.blink:
        up, low = head.lid_pairs[:, 0], head.lid_pairs[:, 1]
        v[up] += expression.blink * 0.95 * (v[low] - v[up])
    if expression.jaw_open:
        n = len(head.jaw_weight)
        a = MAX_JAW_ANGLE * expression.jaw_open * head.jaw_weight
        rel = v[:n] - head.jaw_pivot
        c, s = np.cos(a), np.sin(a)
        y = rel[:, 1] * c - rel[:, 2] * s
        z = rel[:, 1] * s + rel[:, 2] * c
        v[:n, 1] = head.jaw_pivot[1] + y
        v[:n, 2] = head.jaw_pivot[2] + z
    return v


def talking_head_sequence(
    n_frames: int,
    fps: float = 25.0,
    seed: int = 0,
    yaw_range: float = math.radians(25),
    pitch_range: float = math.radians(10),
) -> list[tuple[np.ndarray, Expression]]:
    """A talking-head clip: smooth head motion, speech-like jaw, blinks every few seconds.

    -> n_frames pairs (25-value camera label float32 [25], Expression)."""
    if n_frames <= 0:
        return []
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps

    def wander(amplitude: float) -> np.ndarray:  # a few slow sinusoids, bounded by amplitude
        f = rng.uniform(0.05, 0.4, 3)
        ph = rng.uniform(0, 2 * np.pi, 3)
        w = rng.dirichlet(np.ones(3))
        return amplitude * np.sum(w[:, None] * np.sin(2 * np.pi * f[:, None] * t[None] + ph[:, None]), 0)

    yaw, pitch = wander(yaw_range), wander(pitch_range)
    syll = rng.uniform(3.0, 5.0)
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(0.2, 0.4) * t + rng.uniform(0, 6)) + 0.6, 0, 1)
    jaw = envelope * np.clip(np.sin(2 * np.pi * syll * t + 0.8 * np.sin(2 * np.pi * 1.3 * t)), 0, 1) ** 1.5
    blink = np.zeros(n_frames)
    t_next = rng.uniform(0.5, 3.0)
    while t_next < t[-1] + 1:
        blink = np.maximum(blink, np.clip(1 - np.abs(t - t_next) / 0.09, 0, 1))
        t_next += rng.uniform(2.0, 5.0)
    c2w = yaw_pitch_cam2world(torch.as_tensor(yaw, dtype=torch.float32), torch.as_tensor(pitch, dtype=torch.float32))
    labels = make_label(c2w, intrinsics_from_fov(DEFAULT_FOV_DEG, n_frames)).numpy()
    return [(labels[i], Expression(float(jaw[i]), float(blink[i]))) for i in range(n_frames)]

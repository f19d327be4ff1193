"""Augmentation: cameras for multi-view supervision (the official coach's `gen_rand_pose` role),
and a random camera response for 2D edit pairs.

Novel views are drawn around the *input* view rather than around the frontal one, so a
turned head is supervised at views that stay on the visible side. Yaw/pitch jitter is
large (that is what teaches 3D), radius and fov jitter are small (they only keep the
renderer honest about scale).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from live3dpe.model import cameras


@dataclass(frozen=True)
class CameraJitter:
    """Half-widths of the uniform jitter around the input camera."""

    yaw_deg: float = 35.0
    pitch_deg: float = 15.0
    radius: float = 0.05
    fov_deg: float = 1.0
    max_abs_yaw_deg: float = 50.0
    max_abs_pitch_deg: float = 25.0


def _uniform(n: int, half_width: float, generator: torch.Generator | None) -> Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1) * half_width


def jitter_views(label: Tensor, jitter: CameraJitter, generator: torch.Generator | None = None) -> Tensor:
    """One novel camera per input camera, jittered around it. label [B, 25] -> [B, 25].

    The novel camera keeps the orbit convention (looks at the default pivot); its yaw/pitch
    are clamped to the range a face crop can plausibly show.
    """
    b = label.shape[0]
    yaw, pitch = cameras.camera_yaw_pitch(label.float())
    radius = torch.linalg.norm(cameras.split_label(label.float())[0][:, :3, 3], dim=-1)
    fov = cameras.fov_from_intrinsics(cameras.split_label(label.float())[1])
    max_yaw, max_pitch = math.radians(jitter.max_abs_yaw_deg), math.radians(jitter.max_abs_pitch_deg)
    new_yaw = (yaw + _uniform(b, math.radians(jitter.yaw_deg), generator)).clamp(-max_yaw, max_yaw)
    new_pitch = (pitch + _uniform(b, math.radians(jitter.pitch_deg), generator)).clamp(-max_pitch, max_pitch)
    new_radius = radius + _uniform(b, jitter.radius, generator)
    new_fov = fov + _uniform(b, jitter.fov_deg, generator)
    c2w = cameras.yaw_pitch_cam2world(new_yaw, new_pitch, new_radius)
    return cameras.make_label(c2w, cameras.intrinsics_from_fov(new_fov)).to(label.dtype)


def photometric_jitter(image: Tensor, target: Tensor, strength: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """The same random camera response on an input and its edit, [B, 3, H, W] in [-1, 1] each.

    Per image: gamma, gain, white balance, saturation, contrast and a horizontal flip. The synthetic
    world is shot by one idealised camera; real photos come from many, and an edit must not depend
    on which (strength 0 = unchanged, 1 = the ranges below)."""
    if strength <= 0:
        return image, target
    b = image.shape[0]

    def factor(half_width: float, channels: int = 1) -> Tensor:
        return 1 + strength * _uniform(b * channels, half_width, generator).reshape(b, channels, 1, 1)

    gamma, gain, white, saturation, contrast = factor(0.25), factor(0.25), factor(0.1, 3), factor(0.4), factor(0.3)
    flip = (torch.rand(b, generator=generator) < 0.5).reshape(b, 1, 1, 1)

    def respond(x: Tensor) -> Tensor:
        x = ((x + 1) / 2).clamp(0, 1) ** gamma * gain * white
        grey = x.mean(1, keepdim=True)
        x = grey + (x - grey) * saturation
        mean = x.mean((1, 2, 3), keepdim=True)
        x = ((mean + (x - mean) * contrast).clamp(0, 1)) * 2 - 1
        return torch.where(flip, x.flip(-1), x)

    return respond(image), respond(target)


def random_recolour(n: int, strength: float, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """n random colour transforms y = M x + c on [-1, 1] RGB: hue rotation about the grey axis,
    saturation, gain, a lightness offset along the grey axis and a per-channel offset.
    -> M [n, 3, 3], c [n, 3].

    The lightness range is as wide as real image prompts go: a bronze statue, a painting or a
    night shot is 20-50 L* units (of 100) darker or lighter than the person. Trained with
    per-channel offsets alone (their mean within ±0.3, most within ±0.15), the editor moved a
    face 5-9 L* units darker where such references asked for 21-47 (shared real portraits)."""
    angle = _uniform(n, math.pi * strength, generator)
    saturation = 1 + _uniform(n, 0.8 * strength, generator)
    gain = 1 + _uniform(n, 0.4 * strength, generator)
    axis = torch.full((3,), 3**-0.5)
    cross = torch.tensor([[0.0, -1, 1], [1, 0, -1], [-1, 1, 0]]) * 3**-0.5  # [axis]_x
    outer = torch.outer(axis, axis)
    eye = torch.eye(3)
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    rotation = cos * eye + sin * cross + (1 - cos) * outer  # Rodrigues about the grey axis
    # saturation scales the chroma (the part orthogonal to grey), gain scales everything
    matrix = gain[:, None, None] * (outer + saturation[:, None, None] * (eye - outer)) @ rotation
    lightness = _uniform(n, 0.6 * strength, generator)[:, None]
    offset = lightness + _uniform(n * 3, 0.3 * strength, generator).reshape(n, 3)
    return matrix, offset


def apply_recolour(image: Tensor, matrix: Tensor, offset: Tensor) -> Tensor:
    """image [B, 3, H, W] in [-1, 1] through per-image M [B, 3, 3], c [B, 3]; clamped to [-1, 1]."""
    return (torch.einsum("bij,bjhw->bihw", matrix, image) + offset[:, :, None, None]).clamp(-1, 1)

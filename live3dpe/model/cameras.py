"""Camera geometry in the model's (EG3D) convention, as pure batched tensor functions.

A camera is a 25-value label: the 4x4 cam2world matrix (row-major, OpenCV camera axes:
x right, y down, z forward) followed by the 3x3 intrinsics normalised by image size.
The world is y-up; the head sits near the origin, the default orbit has radius 2.7 and
looks at the pivot (0, 0, 0.2). This module is the only camera convention in the code
base: pose estimation, the synthetic world and the renderer all go through it.

Angles: `yaw` > 0 moves the camera towards +x (the subject's left, seen from the front),
`pitch` > 0 raises the camera (+y) so it looks down. Both are true angles of the camera
position on its sphere, in radians. `official_lookat` reproduces the official sampler,
whose vertical argument is not an angle (see CONVENTIONS.md §7).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_RADIUS = 2.7
DEFAULT_PIVOT = (0.0, 0.0, 0.2)
DEFAULT_FOV_DEG = 18.837
# The official helper uses these truncated constants; keep them so labels match bit for bit.
_OFFICIAL_PI = 3.14159
_OFFICIAL_SQRT2 = 1.414


def _as_batch(x: Tensor | float, dtype=torch.float32, device=None) -> Tensor:
    t = torch.as_tensor(x, dtype=dtype, device=device)
    return t.reshape(-1)


def lookat_cam2world(origin: Tensor, target: Tensor) -> Tensor:
    """cam2world matrices for cameras at `origin` looking at `target`, world up = +y.

    origin, target: [B, 3] -> [B, 4, 4]. Columns are (right, up, forward, origin) with
    the OpenCV axes: `up` here is the camera's +y, which points down in the image.
    """
    forward = torch.nn.functional.normalize(target - origin, dim=-1)
    world_up = torch.tensor([0.0, 1.0, 0.0], dtype=origin.dtype, device=origin.device).expand_as(forward)
    right = -torch.nn.functional.normalize(torch.cross(world_up, forward, dim=-1), dim=-1)
    up = torch.nn.functional.normalize(torch.cross(forward, right, dim=-1), dim=-1)
    c2w = torch.eye(4, dtype=origin.dtype, device=origin.device).repeat(origin.shape[0], 1, 1)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = up
    c2w[:, :3, 2] = forward
    c2w[:, :3, 3] = origin
    return c2w


def _orbit_origin(theta: Tensor, phi: Tensor, radius: Tensor | float) -> Tensor:
    """Point on the orbit sphere (centred at the world origin): theta azimuth, phi polar angle from +y."""
    return torch.stack(
        [
            radius * torch.sin(phi) * torch.cos(math.pi - theta),
            radius * torch.cos(phi),
            radius * torch.sin(phi) * torch.sin(math.pi - theta),
        ],
        dim=-1,
    )


def official_lookat(
    h: Tensor | float,
    v: Tensor | float,
    radius: float = DEFAULT_RADIUS,
    pivot: tuple[float, float, float] = DEFAULT_PIVOT,
) -> Tensor:
    """The official `LookAtPoseSampler.sample(h, v)`: h = pi/2 is frontal, v = pi/2 is level.

    Quirk kept on purpose: the polar angle is arccos(1 - 2v/pi), not v. h, v: [B] -> [B, 4, 4].
    """
    h = _as_batch(h)
    v = _as_batch(v, device=h.device)
    h, v = torch.broadcast_tensors(h, v)
    phi = torch.arccos(torch.clamp(1 - 2 * v / math.pi, -1 + 1e-5, 1 - 1e-5))
    origin = _orbit_origin(h, phi, radius)
    target = torch.tensor(pivot, dtype=origin.dtype, device=origin.device).expand_as(origin)
    return lookat_cam2world(origin, target)


def yaw_pitch_cam2world(
    yaw: Tensor | float,
    pitch: Tensor | float,
    radius: Tensor | float = DEFAULT_RADIUS,
    pivot: tuple[float, float, float] = DEFAULT_PIVOT,
) -> Tensor:
    """Exact-angle orbit camera: yaw/pitch in radians of the camera position, 0/0 = frontal.

    yaw, pitch: [B] (or scalars) -> [B, 4, 4]. The elevation seen from the world origin is
    exactly `pitch` (unlike `official_lookat`).
    """
    yaw = _as_batch(yaw)
    pitch = _as_batch(pitch, device=yaw.device)
    yaw, pitch = torch.broadcast_tensors(yaw, pitch)
    origin = _orbit_origin(yaw + math.pi / 2, math.pi / 2 - pitch, radius)
    target = torch.tensor(pivot, dtype=origin.dtype, device=origin.device).expand_as(origin)
    return lookat_cam2world(origin, target)


def intrinsics_from_fov(fov_deg: Tensor | float, batch: int = 1) -> Tensor:
    """Normalised intrinsics of the official helper: f = 1 / (tan(fov/2) * 1.414).

    The extra 1.414 (and pi as 3.14159) are the official code's; fov here is therefore not
    the true field of view: the true one is `true_fov_deg(fov_deg)`. -> [B, 3, 3]
    """
    fov = _as_batch(fov_deg)
    f = 1.0 / (torch.tan(fov * _OFFICIAL_PI / 360.0) * _OFFICIAL_SQRT2)
    f = f.expand(batch) if f.numel() == 1 else f
    K = torch.zeros(f.shape[0], 3, 3, dtype=f.dtype, device=f.device)
    K[:, 0, 0] = f
    K[:, 1, 1] = f
    K[:, 0, 2] = 0.5
    K[:, 1, 2] = 0.5
    K[:, 2, 2] = 1.0
    return K


def fov_from_intrinsics(K: Tensor) -> Tensor:
    """Inverse of `intrinsics_from_fov` (official fov units). K: [B, 3, 3] -> [B] degrees."""
    f = K[:, 0, 0]
    return torch.atan(1.0 / (f * _OFFICIAL_SQRT2)) * 360.0 / _OFFICIAL_PI


def true_fov_deg(K: Tensor) -> Tensor:
    """Actual full field of view (degrees) of normalised intrinsics. K: [B, 3, 3] -> [B]."""
    return torch.rad2deg(2 * torch.atan(0.5 / K[:, 0, 0]))


def make_label(cam2world: Tensor, K: Tensor) -> Tensor:
    """[B, 4, 4], [B, 3, 3] -> 25-value labels [B, 25]."""
    return torch.cat([cam2world.reshape(-1, 16), K.reshape(-1, 9)], dim=-1)


def split_label(label: Tensor) -> tuple[Tensor, Tensor]:
    """[B, 25] -> cam2world [B, 4, 4], normalised intrinsics [B, 3, 3]."""
    if label.ndim != 2 or label.shape[-1] != 25:
        raise ValueError(f"camera label must have shape [B, 25], got {tuple(label.shape)}")
    return label[:, :16].reshape(-1, 4, 4), label[:, 16:].reshape(-1, 3, 3)


def camera_yaw_pitch(label: Tensor, pivot: tuple[float, float, float] = DEFAULT_PIVOT) -> tuple[Tensor, Tensor]:
    """Yaw/pitch (radians, `yaw_pitch_cam2world` convention) of camera positions. [B, 25] -> [B], [B]."""
    c2w, _ = split_label(label)
    p = c2w[:, :3, 3]
    yaw = torch.atan2(p[:, 0], p[:, 2])
    pitch = torch.atan2(p[:, 1], torch.linalg.norm(p[:, [0, 2]], dim=-1))
    return yaw, pitch


def generate_rays(label: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """World-space rays through pixel centres, ray m = row * resolution + col.

    label: [B, 25] -> origins [B, R*R, 3], unit directions [B, R*R, 3] (R = resolution).
    """
    c2w, K = split_label(label)
    B = label.shape[0]
    fx, fy, cx, cy, sk = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 0, 1]
    idx = (torch.arange(resolution, dtype=label.dtype, device=label.device) + 0.5) / resolution
    v, u = torch.meshgrid(idx, idx, indexing="ij")
    u = u.reshape(1, -1)
    v = v.reshape(1, -1)
    fx, fy, cx, cy, sk = (t[:, None] for t in (fx, fy, cx, cy, sk))
    x = (u - cx + cy * sk / fy - sk * v / fy) / fx
    y = (v - cy) / fy
    pts = torch.stack([x, y.expand_as(x), torch.ones_like(x), torch.ones_like(x)], dim=-1)  # [B, M, 4]
    world = torch.einsum("bij,bmj->bmi", c2w, pts)[..., :3]
    origins = c2w[:, None, :3, 3].expand(B, resolution * resolution, 3)
    dirs = torch.nn.functional.normalize(world - origins, dim=-1)
    return origins, dirs


def project_points(label: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points into normalised image coordinates ([0, 1] spans the image).

    label: [B, 25], points: [B, N, 3] -> uv [B, N, 2], camera-space depth z [B, N].
    Multiply uv by the image size for pixels.
    """
    c2w, K = split_label(label)
    w2c = torch.linalg.inv(c2w)
    cam = torch.einsum("bij,bnj->bni", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    z = cam[..., 2]
    uvw = torch.einsum("bij,bnj->bni", K, cam)
    return uvw[..., :2] / uvw[..., 2:3], z


def orbit_path(
    n_frames: int,
    yaw_range: float = math.radians(30),
    pitch_range: float = math.radians(10),
    radius: float = DEFAULT_RADIUS,
    fov_deg: float = DEFAULT_FOV_DEG,
) -> Tensor:
    """A smooth closed orbit (yaw sine, pitch cosine) for novel-view videos -> [n_frames, 25]."""
    t = torch.arange(n_frames, dtype=torch.float32) / max(n_frames, 1) * 2 * math.pi
    c2w = yaw_pitch_cam2world(yaw_range * torch.sin(t), pitch_range * torch.cos(t), radius)
    return make_label(c2w, intrinsics_from_fov(fov_deg, n_frames))


@dataclass(frozen=True)
class Camera:
    """A batch of cameras: the 25-value label plus readable helpers."""

    label: Tensor  # [B, 25]

    def __post_init__(self) -> None:
        split_label(self.label)  # validates the shape

    @classmethod
    def from_yaw_pitch(
        cls,
        yaw: Tensor | float,
        pitch: Tensor | float,
        radius: float = DEFAULT_RADIUS,
        fov_deg: float = DEFAULT_FOV_DEG,
    ) -> Camera:
        c2w = yaw_pitch_cam2world(yaw, pitch, radius)
        return cls(make_label(c2w, intrinsics_from_fov(fov_deg, c2w.shape[0])))

    @classmethod
    def frontal(cls, batch: int = 1) -> Camera:
        return cls.from_yaw_pitch(torch.zeros(batch), torch.zeros(batch))

    @property
    def cam2world(self) -> Tensor:
        return split_label(self.label)[0]

    @property
    def intrinsics(self) -> Tensor:
        return split_label(self.label)[1]

    @property
    def yaw_pitch(self) -> tuple[Tensor, Tensor]:
        return camera_yaw_pitch(self.label)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Camera:
        return Camera(self.label.to(device=device, dtype=dtype or self.label.dtype))

"""Single-portrait editing: `live3dpe edit`, the gradio app and evaluation all use this service.

Flow: detect and align the face once, encode it with the prompt into triplanes once, then
render any number of views (sliders, orbit video) and the mesh from those planes, so a
slider move costs one render instead of a full edit. The model is reached through the same
`ModelRunner` as the streaming stages.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from live3dpe.model.cameras import Camera, orbit_path
from live3dpe.model.types import Planes
from live3dpe.stream.control import clean_prompt

from .runner import ModelRunner

if TYPE_CHECKING:
    from live3dpe.pose.estimator import FaceObservation

MAX_IMAGE_SIDE = 4096
MIN_IMAGE_SIDE = 64
STILL_RESOLUTION = 512  # a still is looked at closely: edit it at full crop detail where the model can


class NoFaceError(ValueError):
    """The uploaded image has no detectable face; the message tells the user what to try."""


@dataclass
class EditResult:
    """What one edit produces; `planes` are kept so views and exports need no re-encoding."""

    crop: np.ndarray  # aligned input face at the detector's crop size (for display), uint8
    edited: np.ndarray  # edited face seen from the input camera, SxSx3 uint8
    planes: Planes
    camera: Camera  # the input photo's camera
    observation: FaceObservation  # where the face is in the photo (for pasting back)


def check_image(image: np.ndarray | None, what: str = "portrait") -> np.ndarray:
    """Validate an uploaded image (HxWx3/4 or HxW uint8) and return it as HxWx3 uint8 RGB."""
    if image is None:
        raise ValueError(f"no {what} given: upload or snap an image first")
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be 8-bit, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"{what} must be an RGB image, got shape {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE or max(h, w) > MAX_IMAGE_SIDE:
        raise ValueError(f"{what} is {w}x{h}; sides must be within {MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE} pixels")
    return np.ascontiguousarray(image[..., :3])


class PortraitService:
    """Aligns, edits and re-renders single portraits with one `Editor` (or a shared runner)."""

    def __init__(self, editor_or_runner, estimator=None) -> None:
        self.runner = editor_or_runner if isinstance(editor_or_runner, ModelRunner) else ModelRunner(editor_or_runner, torch.get_num_threads())
        self.editor = self.runner.editor
        self._estimator = estimator

    @property
    def estimator(self):
        if self._estimator is None:  # mediapipe start-up is slow; only pay for it when used
            from live3dpe.pose import FacePoseEstimator

            self._estimator = FacePoseEstimator(max_faces=1, static_image=True)
        return self._estimator

    def align(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, Camera, FaceObservation]:
        """The aligned face for display, the same crop at the size the editor takes (512 on the
        appearance route), the photo's camera and the face observation."""
        image = check_image(image)
        obs = self.estimator(image)
        if obs is None:
            raise NoFaceError("no face found in the image: use a photo with one clearly visible, roughly frontal face")
        model_crop = obs.model_crop(image, self.runner.crop_resolution_for(STILL_RESOLUTION))
        return obs.model_crop(image, obs.crop_size), model_crop, obs.camera, obs

    def prompt(self, text: str | None = None, image: np.ndarray | None = None):
        """The prompt embedding, or None (reconstruction only) when neither is given. The text
        limit is enforced here, not only by the page (a client can call the app's API directly)."""
        if image is not None:
            image = check_image(image, "reference image")
        return self.runner.encode_prompt(clean_prompt(text), image)

    def edit(self, image: np.ndarray, text: str | None = None, reference: np.ndarray | None = None) -> EditResult:
        shown, crop, camera, obs = self.align(image)
        planes = self.runner.fuse(self.runner.encode(crop, camera), self.prompt(text, reference))
        return EditResult(shown, self._render(planes, camera), planes, camera, obs)

    def _render(self, planes: Planes, camera: Camera) -> np.ndarray:
        return self.runner.render(planes, camera)

    def view(self, planes: Planes, yaw_deg: float, pitch_deg: float) -> np.ndarray:
        """The edited head from a virtual camera (degrees, 0/0 = frontal)."""
        return self._render(planes, Camera.from_yaw_pitch(math.radians(yaw_deg), math.radians(pitch_deg)))

    def orbit_frames(self, planes: Planes, frames: int = 48) -> list[np.ndarray]:
        labels = orbit_path(frames)
        return [self._render(planes, Camera(labels[i : i + 1])) for i in range(frames)]

    def orbit_video(self, planes: Planes, path: str | Path, frames: int = 48, fps: float = 24.0) -> Path:
        """An MP4 circling the edited head."""
        from live3dpe.stream.frame import Frame
        from live3dpe.stream.videofile import VideoFileSink

        path = Path(path)
        time_base = 1 / Fraction(fps).limit_denominator(1001)
        sink = VideoFileSink(path, fps=fps)
        try:
            for i, img in enumerate(self.orbit_frames(planes, frames)):
                sink.send(Frame(img, i, time_base))
        except BaseException:
            sink.close(abort=True)
            raise
        sink.close()
        return path

    def mesh(self, planes: Planes, path: str | Path, resolution: int = 96) -> Path:
        """A coloured PLY of the edited head's surface."""
        from live3dpe.model.mesh import extract_mesh, write_ply

        verts, faces, colours = extract_mesh(self.editor.net.renderer, planes.tensor, resolution)
        return write_ply(path, verts, faces, colours)

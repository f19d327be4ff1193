"""The product stages the engine runs: face (pose + tracking), model (3DPE edit), compositing.

Each is a callable filling in a `Work`; `build_stages` wires them for an `Editor`. They
import the model/pose/tracking packages lazily so the engine itself stays importable and
testable without them.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

import cv2
import numpy as np
import torch

from .engine import Stage, Work

log = logging.getLogger(__name__)


class FaceStage:
    """Finds the face, smooths its pose over time (One-Euro) and holds it through short dropouts.

    No face is not an error: `work.obs` stays None and the frame passes through (logged once).
    When a face is (re-)acquired, `work.extra["reacquired"]` tells the model stage to forget
    the previous face's triplanes."""

    def __init__(self, estimator=None, obs_filter=None, track=None) -> None:
        from live3dpe.pose import FacePoseEstimator
        from live3dpe.tracking import FaceTrack, ObservationFilter

        self.estimator = estimator or FacePoseEstimator(max_faces=4, crop_size=512, static_image=False)
        self.filter = obs_filter or ObservationFilter()
        self.track = track or FaceTrack(grace_s=0.5, resets=[self.filter])
        self._warned = False

    def __call__(self, work: Work) -> None:
        t = work.frame.time  # media time: offline runs are not real time
        obs = self.estimator(work.frame.image)
        if obs is not None and work.control.smoothing:
            obs = self.filter(obs, t)
        obs = self.track.update(obs, t)
        work.extra["reacquired"] = self.track.reacquired
        if obs is None and not self._warned:
            self._warned = True
            log.info("no face found; passing frames through until one appears")
        work.obs = obs


class _TorchStage:
    """A model stage in its own thread: on CUDA it gets its own stream so it overlaps the other
    stages; on the CPU it uses `cpu_threads` torch threads (default `pipeline_torch_threads()`),
    set from the stage's own thread because the setting is per thread."""

    def __init__(self, editor, cpu_threads: int | None = None) -> None:
        self.editor = editor
        self.device = torch.device(getattr(editor, "device", "cpu"))
        self.cpu_threads = (cpu_threads or pipeline_torch_threads()) if self.device.type == "cpu" else None
        self._threads_set_in: int | None = None
        self._stream = None

    @contextlib.contextmanager
    def running(self):
        """Context for the stage's torch work; on CUDA, results are complete when it exits so
        the next stage (another thread, another stream) can use them."""
        if self.cpu_threads and self._threads_set_in != threading.get_ident():
            torch.set_num_threads(self.cpu_threads)
            self._threads_set_in = threading.get_ident()
        if self.device.type != "cuda":
            with torch.inference_mode():
                yield
            return
        if self._stream is None:
            self._stream = torch.cuda.Stream(device=self.device)
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            yield
        self._stream.synchronize()


class EncodeStage(_TorchStage):
    """Crop → E_low/F and E_high features: `work.features`. Needs no prompt."""

    def __call__(self, work: Work) -> None:
        obs = work.obs
        if obs is None:
            return
        from live3dpe.pose.align import scale_affine, warp_crop

        ed = self.editor
        r = ed.crop_resolution
        crop = warp_crop(work.frame.image, scale_affine(obs.crop_affine, r / obs.crop_size), r)
        # paste / side-by-side show the input camera: on the appearance route that needs no geometry
        geometry = work.control.mode == "view" or not ed.config.appearance_route
        with self.running():
            work.features = ed.encode_features(ed.preprocess(crop), observation_camera(obs), geometry=geometry)


class FuseStage(_TorchStage):
    """Features + prompt → triplane (cross-attention, E_t) → motion-adaptive smoothing: `work.planes`.

    A stage of its own so the model's work splits into three similar parts (CPU per frame in the
    engine, compiled, 640x480: encode 12, fuse 15, render 15 ms) that run at the same time on
    different frames. The prompt
    embedding is recomputed only when `ControlState.prompt_version` changes."""

    def __init__(self, editor, smoother=None, cpu_threads: int | None = None) -> None:
        super().__init__(editor, cpu_threads)
        if smoother is None:
            from live3dpe.tracking import PlanesSmoother

            smoother = PlanesSmoother()
        self.smoother = smoother
        self._prompt_version = -1
        self._prompt = None

    def prompt_for(self, control):
        if control.prompt_version != self._prompt_version:
            has_prompt = control.prompt_text or control.prompt_image is not None
            self._prompt = self.editor.encode_prompt(text=control.prompt_text, image=control.prompt_image) if has_prompt else None
            self._prompt_version = control.prompt_version
            if self.smoother is not None:
                self.smoother.reset()  # a new edit must not blend with the old one
        return self._prompt

    def __call__(self, work: Work) -> None:
        if work.obs is None or work.features is None:
            return
        prompt = self.prompt_for(work.control)
        with self.running():
            planes = self.editor.fuse(work.features, prompt)
            if work.extra.get("reacquired") and self.smoother is not None:
                self.smoother.reset()
            if work.control.smoothing and self.smoother is not None:
                planes = self.smoother(planes, work.obs.motion)
        work.planes = planes


class RenderStage(_TorchStage):
    """Triplane → image from the input camera (paste, side-by-side) or the virtual view: `work.face`."""

    def camera_for(self, work: Work):
        """Input camera (paste / side-by-side: the face must line up) or the virtual view."""
        from live3dpe.model.cameras import Camera

        if work.control.mode == "view":
            yaw, pitch = work.control.view.yaw_pitch(work.frame.time)
            return Camera.from_yaw_pitch(yaw, pitch)
        return observation_camera(work.obs)

    def __call__(self, work: Work) -> None:
        if work.obs is None or work.planes is None:
            return
        with self.running():
            work.face = self.editor.postprocess(self.editor.render_image(work.planes, self.camera_for(work)))[0]


class CompositeStage:
    """Turns the edited face into the output frame for the current mode.

    paste: warped back into the frame with a feathered blend; view: the re-rendered head
    letterboxed to the frame size; side-by-side: original | paste, for debugging."""

    def __call__(self, work: Work) -> None:
        if work.face is None or work.obs is None:
            return
        mode = work.control.mode
        if mode == "view":
            work.output = letterbox(work.face, *work.frame.size)
            return
        pasted = self.paste(work)
        work.output = np.hstack([work.frame.image, pasted]) if mode == "side-by-side" else pasted

    @staticmethod
    def paste(work: Work) -> np.ndarray:
        from live3dpe.pose.align import paste_back

        return paste_back(work.frame.image, work.face, work.obs.crop_affine, crop_size=work.obs.crop_size)


def observation_camera(obs):
    """The model `Camera` of a face observation (its 25-value label)."""
    from live3dpe.model.cameras import Camera

    return Camera(torch.as_tensor(np.asarray(obs.camera, dtype=np.float32)).reshape(1, 25))


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fit a square image into width x height (black bars), keeping the output size constant."""
    side = min(width, height)
    face = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR if side > image.shape[0] else cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - side) // 2, (width - side) // 2
    out[y : y + side, x : x + side] = face
    return out


def pipeline_torch_threads(stages: int = 3) -> int:
    """Torch CPU threads for each of `stages` model stages sharing the machine with the rest.

    They all run at the same time; pools as large as the machine oversubscribe the cores and
    their spinning threads slow everything down (10x measured on 2 cores)."""
    return max(1, (os.cpu_count() or 1) // stages)


def build_stages(editor, estimator=None, cpu_threads: int | None = None) -> list[Stage]:
    """The standard live/offline pipeline for `editor`: encoding frame n+2 overlaps fusing frame
    n+1 and rendering frame n."""
    return [
        Stage("pose", FaceStage(estimator)),
        Stage("encode", EncodeStage(editor, cpu_threads=cpu_threads)),
        Stage("fuse", FuseStage(editor, cpu_threads=cpu_threads)),
        Stage("render", RenderStage(editor, cpu_threads=cpu_threads)),
        Stage("composite", CompositeStage()),
    ]


def naive_step(stages: list[Stage], work: Work) -> np.ndarray:
    """Run the stages one after another on one frame (the sequential baseline of the benchmark)."""
    for stage in stages:
        t0 = time.perf_counter()
        stage.fn(work)
        work.extra[f"{stage.name}_ms"] = (time.perf_counter() - t0) * 1e3
    return work.frame.image if work.output is None else work.output

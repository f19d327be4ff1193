"""The product stages: face (pose + tracking) → encode → fuse → render → compose.

Each is a callable filling in a `FaceWork`; they reach the model only through a `ModelRunner`
and keep their per-stream state (track, smoothing, prompt cache) themselves. `build_stages`
wires them; every front end (live, process, serve, gradio) runs the same list. A fused runner
(`ModelRunner.fused`: Ray Serve) gets one model stage, edit, in place of encode → fuse → render.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from live3dpe.stream.engine import Engine, Stage
from live3dpe.stream.stats import Stats

from .compose import Compose
from .runner import ModelRunner
from .work import FaceWork

if TYPE_CHECKING:
    from live3dpe.model.cameras import Camera
    from live3dpe.model.types import Features, Planes, PromptEmbedding
    from live3dpe.stream.control import ControlState
    from live3dpe.stream.engine import Sink, Source
    from live3dpe.tracking import PlanesSmoother

log = logging.getLogger(__name__)


class FaceStage:
    """Finds the face, smooths its pose over time (One-Euro) and holds it through short dropouts.

    No face is not an error: `work.obs` stays None and the frame passes through (logged once).
    `work.reacquired` tells the fuse stage to forget the previous face's triplanes."""

    def __init__(self, estimator=None, obs_filter=None, track=None) -> None:
        from live3dpe.pose import FacePoseEstimator
        from live3dpe.tracking import FaceTrack, ObservationFilter

        self.estimator = estimator or FacePoseEstimator(max_faces=4, crop_size=512, static_image=False)
        self.filter = obs_filter or ObservationFilter()
        self.track = track or FaceTrack(grace_s=0.5, resets=[self.filter])
        self._warned = False

    def __call__(self, work: FaceWork) -> None:
        t = work.frame.time  # media time: offline runs are not real time
        obs = self.estimator(work.frame.image)
        if obs is not None and work.control.smoothing:
            obs = self.filter(obs, t)
        work.obs = self.track.update(obs, t)
        work.reacquired = self.track.reacquired
        if work.obs is None and not self._warned:
            self._warned = True
            log.info("no face found; passing frames through until one appears")


class EncodeStage:
    """Crop → prompt-independent features (`work.features`); needs no prompt."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner

    @staticmethod
    def request(runner: ModelRunner, work: FaceWork) -> tuple[np.ndarray, Camera, bool]:
        """What the model encodes of a frame with a face: the aligned crop, its camera and
        whether the frame's mode needs the geometry."""
        crop = work.obs.model_crop(work.frame.image, runner.crop_resolution)
        return crop, work.obs.camera, runner.needs_geometry(work.control.mode)

    def __call__(self, work: FaceWork) -> None:
        if work.obs is None:
            return
        work.features = self.runner.encode(*self.request(self.runner, work))


class FuseStage:
    """Features + prompt → triplane → motion-adaptive smoothing: `work.planes`.

    A stage of its own so the model's work splits into three similar parts (CPU per frame in the
    engine, compiled, 640x480: encode 12, fuse 15, render 15 ms) that run at the same time on
    different frames. The prompt embedding is recomputed only when `ControlState.prompt_version`
    changes; smoothing restarts then (a new edit must not blend with the old one) and when the
    face is re-acquired."""

    def __init__(self, runner: ModelRunner, smoother=None) -> None:
        if smoother is None:
            from live3dpe.tracking import PlanesSmoother

            smoother = PlanesSmoother()
        self.runner = runner
        self.smoother = smoother
        self._prompt_version = -1
        self._prompt: PromptEmbedding | None = None

    def prompt_for(self, control: ControlState) -> PromptEmbedding | None:
        if control.prompt_version != self._prompt_version:
            self._prompt = self.runner.encode_prompt(control.prompt_text, control.prompt_image)
            self._prompt_version = control.prompt_version
            self.smoother.reset()
        return self._prompt

    def planes_for(self, features: Features, control: ControlState, motion: float, reacquired: bool = False) -> Planes:
        """The (smoothed) planes of one frame's features under `control`."""
        return self.smoothed(self.runner.fuse(features, self.prompt_for(control)), control, motion, reacquired)

    def smoother_for(self, control: ControlState, reacquired: bool = False) -> PlanesSmoother | None:
        """This stream's smoother for a frame under `control` (None: smoothing is off), restarted
        when the face was re-acquired."""
        if reacquired:
            self.smoother.reset()
        return self.smoother if control.smoothing else None

    def smoothed(self, planes: Planes, control: ControlState, motion: float, reacquired: bool = False) -> Planes:
        """`planes` through this stream's temporal smoothing (restarted when the face was re-acquired)."""
        smoother = self.smoother_for(control, reacquired)
        if smoother is None:
            return planes
        with self.runner.running():
            return smoother(planes, motion)

    def __call__(self, work: FaceWork) -> None:
        if work.obs is None or work.features is None:
            return
        work.planes = self.planes_for(work.features, work.control, work.obs.motion, work.reacquired)


class RenderStage:
    """Triplane → the face from the input camera (paste, side-by-side) or the virtual view: `work.face`."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner

    @staticmethod
    def camera_for(work: FaceWork) -> Camera:
        """Input camera (paste / side-by-side: the face must line up) or the virtual view."""
        from live3dpe.model.cameras import Camera

        if work.control.mode == "view":
            yaw, pitch = work.control.view.yaw_pitch(work.frame.time)
            return Camera.from_yaw_pitch(yaw, pitch)
        return work.obs.camera

    def __call__(self, work: FaceWork) -> None:
        if work.obs is None or work.planes is None:
            return
        work.face = self.runner.render(work.planes, self.camera_for(work))


class EditStage:
    """Encode → fuse → smoothing → render as one runner call (`ModelRunner.edit`): `work.face`.

    For a fused runner (`ModelRunner.fused`), whose every call is a round trip (Ray Serve): one
    per frame instead of three. The stream's prompt cache and smoothing are those of a
    `FuseStage`, kept here; the smoother goes along with the call."""

    def __init__(self, runner: ModelRunner, smoother=None) -> None:
        self.runner = runner
        self.fuse = FuseStage(runner, smoother)

    def __call__(self, work: FaceWork) -> None:
        if work.obs is None:
            return
        crop, camera, geometry = EncodeStage.request(self.runner, work)
        prompt = self.fuse.prompt_for(work.control)
        smoother = self.fuse.smoother_for(work.control, work.reacquired)
        work.face = self.runner.edit(crop, camera, prompt, RenderStage.camera_for(work), geometry, smoother, work.obs.motion)


def build_stages(editor_or_runner, estimator=None, cpu_threads: int | None = None, stats: Stats | None = None) -> list[Stage]:
    """The standard pipeline for an `Editor` (or a shared `ModelRunner`): encoding frame n+2
    overlaps fusing frame n+1 and rendering frame n; a fused runner's frames take one edit
    stage instead. `stats` feeds the compositor's overlay."""
    runner = editor_or_runner if isinstance(editor_or_runner, ModelRunner) else ModelRunner(editor_or_runner, cpu_threads)
    if runner.fused:
        model = [Stage("edit", EditStage(runner))]
    else:
        model = [Stage("encode", EncodeStage(runner)), Stage("fuse", FuseStage(runner)), Stage("render", RenderStage(runner))]
    return [Stage("pose", FaceStage(estimator)), *model, Stage("compose", Compose(stats, runner.reproduces_input), always=True)]


def pipeline_engine(source: Source, sink: Sink, editor_or_runner, *, stats: Stats | None = None, estimator=None,
                    cpu_threads: int | None = None, **engine_args) -> Engine:
    """An `Engine` running the standard stages from `source` to `sink` (see `Engine` for
    `live`, `control`, `max_frames`, ...)."""
    stats = stats or Stats()
    stages = build_stages(editor_or_runner, estimator, cpu_threads, stats)
    return Engine(source, sink, stages, stats=stats, make_work=FaceWork, **engine_args)


def run_once(stages: list[Stage], work: FaceWork, stats: Stats | None = None) -> np.ndarray:
    """Run the stages one after another on one frame, as the engine would (the naive loop of the
    benchmark, the gradio webcam tab): a failing stage skips the rest but not `always` ones."""
    for stage in stages:
        if not stage.runs_on(work):
            continue
        t0 = time.perf_counter()
        try:
            stage.fn(work)
        except Exception as err:
            work.failed = work.failed or stage.name
            work.output = None
            log.debug("%s failed", stage.name, exc_info=True)
            if stats is not None:
                stats.record_fault(stage.name, err)
        if stats is not None:
            stats.record_stage(stage.name, time.perf_counter() - t0)
    return work.frame.image if work.output is None else work.output

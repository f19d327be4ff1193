"""Stability over time on a synthetic talking head: flicker with and without triplane smoothing,
and pose jitter of the raw and One-Euro-filtered estimates.

The head moves by its camera (as a pose estimator reports it) while the jaw talks and the eyes
blink. Each frame is edited at its own camera by the live pipeline's own fuse stage, once with
smoothing off and once on (`PlanesSmoother` on the triplane and colour-edit field, driven by
`ObservationFilter`'s motion measure). The ground-truth edited clip's own flicker is the floor (real motion, no noise).
"""
from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import torch

from live3dpe.evaluation.metrics import flow_warping_error, jitter, psnr
from live3dpe.model.cameras import Camera, camera_yaw_pitch
from live3dpe.model.editor import Editor
from live3dpe.pipeline import FuseStage, ModelRunner
from live3dpe.stream.control import ControlState
from live3dpe.synth.expression import talking_head_sequence
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import render
from live3dpe.synth.styles import STYLES
from live3dpe.tracking import ObservationFilter

log = logging.getLogger(__name__)

_SEQUENCE_STREAM = 5
POSE_INPUT_SIZE = 256  # FaceMesh is unreliable on 128-px faces: small renders are upscaled first


def _pose_tracker():
    """(estimator, filter), or (None, None) when mediapipe cannot run here."""
    try:
        from live3dpe.pose.estimator import FacePoseEstimator

        return FacePoseEstimator(max_faces=1), ObservationFilter()
    except (ImportError, RuntimeError) as err:
        log.warning("pose estimation unavailable (%s): smoothing runs with zero motion, no pose jitter", err)
        return None, None


def _jitter_or_none(series: list) -> float | None:
    return jitter(np.asarray(series)) if len(series) >= 3 else None


def run_sequence(editor: Editor, style: str, frames: int = 20, fps: float = 25.0, seed: int = 0, supersample: int = 3) -> dict:
    """Edit a talking-head clip of one unseen person (image prompt of `style`) -> stability metrics."""
    rng = np.random.default_rng([seed, _SEQUENCE_STREAM])
    person = sample_person(rng)
    edited = STYLES[style].apply(person)
    reference = STYLES[style].apply(sample_person(rng))
    sequence = talking_head_sequence(frames, fps, seed)
    prompt_image = render(reference, sequence[0][0], editor.crop_resolution, supersample=supersample).image
    runner = ModelRunner(editor, torch.get_num_threads())
    fuse = FuseStage(runner)
    control = ControlState(prompt_image=prompt_image, smoothing=True)
    estimator, obs_filter = _pose_tracker()
    raw, smooth, truth = [], [], []
    gt_pose, est_pose, filt_pose = [], [], []
    motion = 0.0
    try:
        for k, (label, expression) in enumerate(sequence):
            frame = render(person, label, editor.crop_resolution, expression=expression, supersample=supersample).image
            truth.append(render(edited, label, editor.output_resolution, expression=expression, supersample=supersample).image)
            if estimator is not None:
                obs = estimator(cv2.resize(frame, (POSE_INPUT_SIZE, POSE_INPUT_SIZE), interpolation=cv2.INTER_CUBIC))
                if obs is None:
                    obs_filter.reset()
                else:
                    filtered = obs_filter(obs, k / fps)
                    motion = filtered.motion
                    yaw, pitch = camera_yaw_pitch(torch.as_tensor(label, dtype=torch.float64)[None])
                    gt_pose.append([math.degrees(float(yaw)), math.degrees(float(pitch))])
                    est_pose.append([obs.yaw, obs.pitch])
                    filt_pose.append([filtered.yaw, filtered.pitch])
            cam = Camera(torch.as_tensor(label, dtype=torch.float32).reshape(1, 25))
            features = runner.encode(frame, cam)
            planes = runner.fuse(features, fuse.prompt_for(control))
            raw.append(runner.render(planes, cam))
            smooth.append(runner.render(fuse.smoothed(planes, control, motion), cam))
    finally:
        if estimator is not None:
            estimator.close()

    def fidelity(clip: list[np.ndarray]) -> float:
        return float(np.mean([psnr(a.astype(np.float32) / 255, b.astype(np.float32) / 255) for a, b in zip(clip, truth)]))

    return {
        "style": style,
        "frames": frames,
        "fps": fps,
        "flicker": {"raw": flow_warping_error(raw), "smoothed": flow_warping_error(smooth), "ground_truth": flow_warping_error(truth)},
        "psnr_vs_truth": {"raw": fidelity(raw), "smoothed": fidelity(smooth)},
        "pose_jitter_deg": {
            "ground_truth": _jitter_or_none(gt_pose),
            "estimated": _jitter_or_none(est_pose),
            "filtered": _jitter_or_none(filt_pose),
        },
        "pose_detected": len(est_pose) / frames,
        "pose_available": estimator is not None,
    }

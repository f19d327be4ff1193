"""Pipeline stages without a model: prompt caching, cameras per mode, geometry on demand, the
compositor (layout, mirror, overlay, constant size), bounded stats; and with the bundled model,
the fused runner's one edit stage against the three model stages."""
from __future__ import annotations

import math
import time
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from live3dpe.model.cameras import Camera
from live3dpe.pipeline import (
    Compose,
    EncodeStage,
    FaceWork,
    FuseStage,
    ModelRunner,
    RenderStage,
    build_stages,
    output_size,
    run_once,
)
from live3dpe.pipeline.compose import draw_overlay, letterbox
from live3dpe.stream.control import Control
from live3dpe.stream.frame import Frame
from live3dpe.stream.stats import Stats


class PromptCounter:
    """Records which prompts the model stage asks the editor to encode."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = []

    def encode_prompt(self, text=None, image=None):
        self.calls.append(text)
        return f"embedding:{text}"


class SmootherSpy:
    def __init__(self):
        self.resets = 0

    def reset(self):
        self.resets += 1


def work_for(control: Control, obs=None, size=(64, 48), pts=0) -> FaceWork:
    return FaceWork(Frame(np.zeros((size[1], size[0], 3), np.uint8), pts, Fraction(1, 30)), control.get(), obs=obs)


def test_prompt_is_encoded_only_when_it_changes():
    editor, smoother = PromptCounter(), SmootherSpy()
    stage = FuseStage(ModelRunner(editor, cpu_threads=1), smoother=smoother)
    control = Control(prompt_text="golden statue")
    for _ in range(3):
        assert stage.prompt_for(control.get()) == "embedding:golden statue"
    control.update(mirror=True, view="orbit")  # other settings: no re-encode
    stage.prompt_for(control.get())
    control.update(prompt_text="zombie")
    assert stage.prompt_for(control.get()) == "embedding:zombie"
    assert editor.calls == ["golden statue", "zombie"]
    assert smoother.resets == 2  # a new prompt never blends with the old edit
    control.update(prompt_text=None)
    assert stage.prompt_for(control.get()) is None and len(editor.calls) == 2


def test_camera_follows_the_face_in_paste_mode_and_the_view_otherwise():
    stage = RenderStage(ModelRunner(PromptCounter(), cpu_threads=1))
    face_cam = Camera.from_yaw_pitch(math.radians(15), math.radians(-5))
    obs = SimpleNamespace(camera=face_cam)
    control = Control(mode="paste")
    assert torch.allclose(stage.camera_for(work_for(control, obs)).label, face_cam.label)
    control.update(mode="view", view="yaw=-20,pitch=0")
    yaw, pitch = stage.camera_for(work_for(control, obs)).yaw_pitch
    assert math.degrees(float(yaw)) == pytest.approx(-20, abs=1e-3) and float(pitch) == pytest.approx(0, abs=1e-5)
    control.update(view="orbit")
    cams = [stage.camera_for(work_for(control, obs, pts=p)).yaw_pitch[0] for p in (0, 45)]
    assert not torch.allclose(cams[0], cams[1])


def test_letterbox_keeps_frame_size_and_centres_the_face():
    face = np.full((32, 32, 3), 200, np.uint8)
    out = letterbox(face, 160, 90)
    assert out.shape == (90, 160, 3)
    assert out[:, :35].max() == 0 and out[:, -35:].max() == 0 and out[45, 80, 0] == 200


def test_view_mode_composite_uses_the_render_without_paste():
    control = Control(mode="view")
    w = work_for(control, obs=SimpleNamespace(), size=(80, 60))
    w.face = np.full((16, 16, 3), 99, np.uint8)
    Compose()(w)
    assert w.output.shape == (60, 80, 3) and w.output[30, 40, 0] == 99


def test_composite_without_face_passes_the_frame_through():
    w = work_for(Control(), obs=None)
    w.frame.image[:] = 7
    Compose()(w)
    assert np.array_equal(w.output, w.frame.image)


@pytest.mark.parametrize("mode", ["paste", "view", "side-by-side"])
@pytest.mark.parametrize("what", ["no face", "failed", "passthrough"])
def test_compose_keeps_the_output_size_of_the_mode_and_mirrors_on_unedited_frames(mode, what):
    control = Control(mode=mode, mirror=True, passthrough=what == "passthrough")
    w = work_for(control, obs=None if what == "no face" else SimpleNamespace(), size=(64, 48))
    w.face = None if what == "no face" else np.full((16, 16, 3), 99, np.uint8)
    w.failed = "render" if what == "failed" else None
    w.frame.image[:, :10] = 255
    Compose()(w)
    assert w.output.shape[:2][::-1] == output_size(mode, 64, 48)
    assert w.output[0, -1, 0] == 255 and w.output[0, 0, 0] == 0  # mirrored, and not the face render
    assert not w.edited


def test_overlay_is_drawn_by_the_compositor_from_the_stats():
    stats = Stats()
    stats.record_stage("render", 0.012)
    w = work_for(Control(overlay=True), size=(320, 240))
    Compose(stats)(w)
    assert w.output[5:40, 5:120].max() > 200 and w.frame.image.max() == 0


def test_overlay_draws_text_without_touching_the_input():
    img = np.full((120, 160, 3), 128, np.uint8)
    out = draw_overlay(img, ["12.0 fps", "model 30.0 ms"])
    assert (img == 128).all() and not np.array_equal(out, img) and out.shape == img.shape


def text_height(image: np.ndarray) -> int:
    """Rows of the overlay band that hold white text pixels in its first line."""
    rows = np.flatnonzero((image[..., 0] > 200).any(1))
    first = rows[: np.argmax(np.diff(rows, append=rows[-1] + 2) > 1) + 1]
    return int(first[-1] - first[0] + 1)


@pytest.mark.parametrize("height", [400, 480, 720])
def test_overlay_text_is_readable_at_the_frame_size(height):
    """About 1/30 of the frame height, so it stays readable in a shrunk window (was ~6 px)."""
    out = draw_overlay(np.zeros((height, height * 4 // 3, 3), np.uint8), ["Fps 30.0"])
    assert text_height(out) >= height / 40


def test_stats_history_is_bounded_and_numbered():
    s = Stats(history=50)
    for i in range(200):
        s.record_output(time.monotonic_ns() - i * 1_000_000)
    assert s.latency_count == 200 and len(s.latencies_since(0)) == 50
    assert len(s.latencies_since(190)) == 10 and s.latencies_since(200) == []


def test_stats_summarise_stages_latency_and_rate():
    s = Stats()
    for ms in (10, 20, 30):
        s.record_stage("model", ms / 1e3)
    for _ in range(5):
        s.record_output(time.monotonic_ns() - 5_000_000)
        time.sleep(0.01)
    snap = s.snapshot()
    assert snap["stage_ms"]["model"] == pytest.approx(20)
    assert snap["latency_ms_p50"] >= 5 and snap["frames_out"] == 5 and snap["fps"] > 0
    assert s.overlay_lines()[0].endswith("ms") and "model" in s.overlay_lines()[1]


class GeometrySpy:
    """An appearance-route editor that records whether the encode stage asked for geometry."""

    device = torch.device("cpu")
    crop_resolution = 32
    config = SimpleNamespace(appearance_route=True)

    def __init__(self):
        self.geometry = []

    def preprocess(self, crop):
        return torch.zeros(1, 3, *crop.shape[:2])

    def encode_features(self, image, camera, geometry=True):
        self.geometry.append(geometry)
        return "features"


def test_encode_stage_computes_geometry_only_when_a_virtual_view_needs_it():
    editor = GeometrySpy()
    stage = EncodeStage(ModelRunner(editor, cpu_threads=1))
    obs = SimpleNamespace(camera=Camera.frontal(), model_crop=lambda frame, size: np.zeros((size, size, 3), np.uint8))
    control = Control(mode="paste")
    for mode in ("paste", "side-by-side", "view"):
        control.update(mode=mode)
        stage(work_for(control, obs))
    assert editor.geometry == [False, False, True]
    editor.config = SimpleNamespace(appearance_route=False)  # the triplane route always needs it
    control.update(mode="paste")
    stage(work_for(control, obs))
    assert editor.geometry[-1] is True


def test_paste_matches_colour_for_reconstructions_but_keeps_an_edit_s_colours():
    """The seam colour match pulls exposure back to the frame's; an edit's recolouring must stay."""
    from test_paste import _observation

    obs = _observation()
    frame = np.full((480, 640, 3), (190, 140, 115), np.uint8)
    gold = np.full((256, 256, 3), (230, 180, 40), np.uint8)
    x, y = (int(v) for v in obs.landmarks[4, :2])  # the nose tip: well inside the face
    outputs = {}
    for prompt in (None, "golden statue"):
        w = FaceWork(Frame(frame, 0, Fraction(1, 30)), Control(prompt_text=prompt).get(), obs=obs, face=gold)
        Compose()(w)
        outputs[prompt] = w.output[y, x].astype(int)
    assert np.abs(outputs["golden statue"] - gold[0, 0]).max() <= 2  # the edit as rendered
    assert np.abs(outputs[None] - frame[0, 0]).sum() < np.abs(gold[0, 0].astype(int) - frame[0, 0]).sum()


def test_the_compositor_pastes_an_edit_above_the_oval_only_for_a_model_that_reproduces_its_input():
    """`build_stages` tells the compositor whether the model's image is the input wherever the edit
    left it (the appearance route): then an edit reaching the forehead is pasted there too."""
    from test_paste import _observation, _reproduced_crop, _textured_frame

    obs = _observation()
    frame = _textured_frame()
    face = np.clip(_reproduced_crop(frame, obs).astype(int) + [-60, 60, -60], 0, 255).astype(np.uint8)
    top = obs.landmarks[10, :2]  # the face oval's topmost point: the forehead above it is outside the oval
    x, y = (int(v) for v in top - [0, 0.06 * (obs.landmarks[152, 1] - top[1])])  # 152: the chin
    greener = {}
    for appearance_route in (False, True):
        editor = GeometrySpy()
        editor.config = SimpleNamespace(appearance_route=appearance_route)
        compose = build_stages(editor, cpu_threads=1)[-1].fn
        w = FaceWork(Frame(frame, 0, Fraction(1, 30)), Control(prompt_text="zombie").get(), obs=obs, face=face)
        compose(w)
        greener[appearance_route] = int(w.output[y, x, 1]) - int(frame[y, x, 1])
    assert greener == {False: 0, True: greener[True]} and greener[True] > 40


def test_a_fused_runner_s_edit_stage_gives_the_frames_of_the_three_model_stages():
    """`build_stages` on a fused runner: one edit stage in place of encode → fuse → render, and
    frame for frame the output of the three, smoothing on, through a lost and re-found face, a
    switch from paste to view and a new prompt."""
    from live3dpe.model.editor import Editor
    from live3dpe.stream.synthetic import SyntheticFaceSource

    editor = Editor.load("default")
    fused = ModelRunner(editor, cpu_threads=1)
    fused.fused = True
    staged, edited = build_stages(editor, cpu_threads=1), build_stages(fused)
    assert [s.name for s in edited] == ["pose", "edit", "compose"]
    source = SyntheticFaceSource(320, 240, fps=1, frames=7)
    control = Control(prompt_text="golden statue")
    changes = {4: {"mode": "view"}, 5: {"prompt_text": "a zombie"}}
    for i in range(7):
        frame = source.recv()
        if i in (1, 2):  # the face is lost for longer than the track's grace (0.5 s)
            frame = Frame(np.zeros_like(frame.image), frame.pts, frame.time_base)
        control.update(**changes.get(i, {}))
        expected = run_once(staged, FaceWork(frame, control.get()))
        work = FaceWork(frame, control.get())
        got = run_once(edited, work)
        assert work.failed is None and (work.face is not None or i == 2) and work.reacquired == (i in (0, 3))
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1

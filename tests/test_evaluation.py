"""The evaluation suite: weight metrics' availability, the Table 1 harness, temporal stability."""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest
import torch

from live3dpe.evaluation.compare import METRICS, LearnedMetrics, run_comparison, score_views, summarize
from live3dpe.evaluation.learned import (
    ARCFACE_TEMPLATE,
    NO_WEIGHTS,
    ClipImageSimilarity,
    Unavailable,
    align_to_template,
    load_clip,
    load_identity,
)
from live3dpe.evaluation.suite import SuiteConfig, markdown, run_suite
from live3dpe.evaluation.world import make_cases
from live3dpe.model.checkpoint import build_net
from live3dpe.model.config import TINY
from live3dpe.model.editor import Editor
from live3dpe.synth.styles import STYLES

NO_LEARNED = LearnedMetrics(identity=load_identity(None), clip=load_clip(None))
YAWS = (0.0, math.radians(25))


@pytest.fixture(scope="module")
def micro_editor() -> Editor:
    """A random tiny-topology editor at 64 px (no text back-end): fast enough for a harness test."""
    cfg = dataclasses.replace(
        TINY,
        name="micro",
        input_resolution=64,
        render=dataclasses.replace(TINY.render, neural_resolution=16, output_resolution=64, coarse_samples=8, fine_samples=8),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_net(cfg)
    return Editor(net, weights_version="random-micro")


@pytest.fixture(scope="module")
def cases(micro_editor):
    return make_cases(2, YAWS, micro_editor.input_resolution, micro_editor.output_resolution, ("bronze", "red_hair"), supersample=1)


@pytest.fixture(scope="module")
def records(micro_editor, cases):
    return run_comparison(micro_editor, cases, NO_LEARNED, text=True)


# ------------------------------------------------------------------------------ weight metrics
def test_weight_metrics_without_weights_are_unavailable():
    assert NO_LEARNED.identity == Unavailable("identity_arcface", NO_WEIGHTS)
    assert NO_LEARNED.clip == Unavailable("clip_image", NO_WEIGHTS)
    assert NO_LEARNED.notes() == {"identity": NO_WEIGHTS, "clip_reference": NO_WEIGHTS, "clip_truth": NO_WEIGHTS}


def test_missing_weight_files_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_identity(tmp_path / "nope.onnx")
    with pytest.raises(FileNotFoundError):
        load_clip(tmp_path / "nope")


def test_arcface_without_onnxruntime_says_why(tmp_path):
    try:
        import onnxruntime  # noqa: F401

        pytest.skip("onnxruntime is installed")
    except ImportError:
        pass
    model = tmp_path / "w600k_r50.onnx"
    model.write_bytes(b"not read")
    metric = load_identity(model)
    assert isinstance(metric, Unavailable) and "onnxruntime" in metric.reason


def test_alignment_puts_five_points_on_the_template():
    # a 224 image with dots at twice the template positions, shifted by (10, -6): the warp
    # must undo the shift and the scale, putting each dot back on its template point
    image = np.zeros((224, 224, 3), np.uint8)
    points = ARCFACE_TEMPLATE * 2 + np.array([10.0, -6.0], np.float32)
    for x, y in points:
        cv2.circle(image, (round(x), round(y)), 3, (255, 255, 255), -1)
    crop = align_to_template(image, points)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE:
        assert crop[round(y), round(x)].min() > 200
    assert crop[5, 5].max() == 0


def test_clip_similarity_from_a_local_folder(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=100),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=8,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    clip = load_clip(tmp_path)
    assert isinstance(clip, ClipImageSimilarity)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(2))
    assert clip.similarity(a, a) == pytest.approx(1.0, abs=1e-5)
    assert clip.similarity(a, b) == pytest.approx(clip.similarity(b, a), abs=1e-6)
    assert clip.embed([a, b]).shape == (2, 8)


# ------------------------------------------------------------------------------ Table 1 harness
def test_ground_truth_against_itself_is_perfect(cases):
    rows = score_views(cases[0], None, NO_LEARNED)
    assert len(rows) == len(YAWS)
    for row in rows:
        assert row["psnr"] == math.inf and row["psnr_face"] == math.inf
        assert row["ssim"] == pytest.approx(1.0)
        assert row["depth_abs"] == 0.0
        assert row["identity"] is None and row["edit_ms"] is None
    assert rows[0]["consistency"] is None  # the input view is not compared with itself
    assert math.isfinite(rows[1]["consistency"]) and rows[1]["consistency"] > 15


def test_cases_hold_unseen_people_and_the_2d_teacher(cases):
    a, b = cases
    assert (a.style, b.style) == ("bronze", "red_hair")
    assert not np.array_equal(a.input.image, b.input.image)
    assert not np.array_equal(a.input.image, a.teacher_2d.image)  # the edit changes the frame
    np.testing.assert_array_equal(a.teacher_2d.image, a.truth[a.input_index].image)  # teacher = truth at the input view
    assert a.phrase in STYLES["bronze"].heldout_phrases


def test_comparison_harness_gives_finite_numbers_and_the_table_shape(records):
    # no text back-end on the micro editor: the text row is skipped, the other four remain
    methods = ("3dpe_image", "2d_then_3d", "reconstruction", "ground_truth")
    assert len(records) == 2 * len(YAWS) * len(methods)
    for r in records:
        if r["method"] == "ground_truth":
            continue
        for key in ("psnr", "psnr_face", "ssim", "depth_abs", "edit_ms"):
            assert math.isfinite(r[key]), (r["method"], key)
        assert r["identity"] is None and r["clip_reference"] is None
    summary = summarize(records)
    assert list(summary["table"]) == list(methods)
    assert all(set(row) == set(METRICS) for row in summary["table"].values())
    assert list(summary["by_yaw"]["3dpe_image"]) == ["0.0", "25.0"]
    assert summary["table"]["ground_truth"]["psnr"] == math.inf
    assert summary["table"]["reconstruction"]["consistency"] is not None


# ------------------------------------------------------------------------------ suite + report text
@pytest.mark.slow
def test_suite_payload_and_markdown(micro_editor):
    cfg = SuiteConfig(people=1, yaws_deg=(0.0, 20.0), sequence_frames=3, supersample=1)
    payload = run_suite(micro_editor, cfg, NO_LEARNED)
    seq = payload["sequence"]
    assert set(seq["flicker"]) == {"raw", "smoothed", "ground_truth"}
    assert all(math.isfinite(v) for v in seq["flicker"].values())
    assert seq["flicker"]["ground_truth"] > 0  # the head moves and talks
    text = markdown(payload)
    assert "random weights" in text
    assert "unavailable (no weights supplied)" in text
    assert text.count("| 3DPE (image prompt) |") == 1 and "| ground truth (ceiling) | inf | inf |" in text


class _FakeSession:
    """Stands in for onnxruntime: 'embeds' the aligned crop as its 8x8 mean-pooled pixels."""

    def __init__(self, path, providers):
        self.seen: list[np.ndarray] = []

    def get_inputs(self):
        return [type("Input", (), {"name": "input.1"})()]

    def run(self, outputs, feeds):
        blob = feeds["input.1"]
        self.seen.append(blob)
        return [blob.reshape(1, 3, 8, 14, 8, 14).mean((3, 5)).reshape(1, -1)]


def test_arcface_wiring_finds_aligns_and_normalises(monkeypatch, tmp_path):
    import sys
    import types

    from live3dpe.evaluation.learned import ArcFaceIdentity
    from live3dpe.model.cameras import Camera
    from live3dpe.synth.person import sample_person
    from live3dpe.synth.render import render

    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(InferenceSession=_FakeSession))
    model = tmp_path / "arcface.onnx"
    model.write_bytes(b"fake")
    metric = load_identity(model)
    assert isinstance(metric, ArcFaceIdentity)
    face = render(sample_person(np.random.default_rng(3)), Camera.frontal().label[0].numpy(), 128, supersample=1).image
    e = metric.embed(face)
    blob = metric._session.seen[-1]
    assert blob.shape == (1, 3, 112, 112) and -1 <= blob.min() and blob.max() <= 1  # 112 crop, (x - 127.5) / 127.5
    assert np.linalg.norm(e) == pytest.approx(1.0)
    assert metric.similarity(face, face) == pytest.approx(1.0)
    assert math.isnan(metric.similarity(face, np.full_like(face, 128)))  # no face: not measurable

"""Real-face evaluation: known answers for each metric (and that each can fail), and the
`eval --real` / `eval --real-clip` commands end to end on small generated inputs.

The only real faces here are scikit-image's bundled samples (the astronaut, LFW crops); nothing
from the shared evaluation folders is used.
"""
from __future__ import annotations

import importlib.util
import json
from fractions import Fraction

import cv2
import numpy as np
import pytest
from skimage import data

from live3dpe.cli import main
from live3dpe.evaluation import identity as identity_mod
from live3dpe.evaluation.clip import PairFlow, guided_warping_error, sample_indices
from live3dpe.evaluation.facestats import (
    FACE_SIZE,
    at_face_size,
    expectation_for,
    face_mask,
    lab_stats,
    reference_direction,
    sharpness_ratio,
    spread,
)
from live3dpe.evaluation.identity import NO_FACE_DISTANCE, SAME_PERSON, DlibIdentity, load_dlib_identity
from live3dpe.evaluation.learned import Unavailable
from live3dpe.evaluation.sheet import contact_sheet, write_image

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="dlib / face-recognition-models not installed (the `eval` extra)")


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut())


def shift_lab(rgb: np.ndarray, channel: int, amount: float) -> np.ndarray:
    """The image with a CIELAB channel (0 L, 1 a, 2 b; OpenCV's 8-bit scale) moved by `amount`."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., channel] += amount
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def degrade(gray_face: np.ndarray) -> np.ndarray:
    """A 25-px grey face blown up and padded: LFW-subset quality, applied alike to every face compared."""
    small = cv2.resize(gray_face, (25, 25), interpolation=cv2.INTER_AREA)
    big = cv2.resize(np.repeat(small[..., None], 3, -1), (200, 200), interpolation=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(big, 50, 50, 50, 50, cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def dlib_identity() -> DlibIdentity:
    if not HAS_DLIB:
        pytest.skip("dlib / face-recognition-models not installed (the `eval` extra)")
    return DlibIdentity()


# ------------------------------------------------------------------------------------ identity
@needs_dlib
def test_identity_same_image_is_zero_and_a_recoloured_face_is_the_same_person(dlib_identity):
    img = astronaut()
    assert dlib_identity.distance(img, img) < 1e-6
    gold = shift_lab(img, 2, +40)  # much yellower
    assert lab_stats(gold)["b"] > lab_stats(img)["b"] + 15
    assert dlib_identity.distance(img, gold) < SAME_PERSON


@needs_dlib
def test_identity_tells_different_people_apart(dlib_identity):
    """The astronaut vs LFW faces, all degraded the same way: > 0.6; the degraded astronaut vs the
    original stays < 0.6, so the degradation alone does not make a different person."""
    img = astronaut()
    box = dlib_identity._detector(img, 1)
    box = max(box, key=lambda b: b.width() * b.height())
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    her = degrade(gray[box.top() - 10 : box.bottom() + 5, box.left() - 5 : box.right() + 5])
    assert dlib_identity.distance(her, img) < SAME_PERSON
    others = [degrade((face * 255).astype(np.uint8)) for face in data.lfw_subset()[:6]]  # the first 100 are faces
    distances = [dlib_identity.between(dlib_identity.descriptor(her), d) for d in map(dlib_identity.descriptor, others) if d is not None]
    assert len(distances) >= 3
    assert min(distances) > SAME_PERSON


@needs_dlib
def test_identity_without_a_face_counts_as_lost(dlib_identity):
    blank = np.full((256, 256, 3), 128, np.uint8)
    assert dlib_identity.descriptor(blank) is None
    assert dlib_identity.distance(astronaut(), blank) == NO_FACE_DISTANCE == 1.0


def test_identity_is_reported_unavailable_without_the_model_files(monkeypatch):
    monkeypatch.setattr(identity_mod.importlib.util, "find_spec", lambda name: None)
    metric = load_dlib_identity()
    assert isinstance(metric, Unavailable) and "eval" in metric.reason


# ------------------------------------------------------------------------------- face statistics
def face_crop() -> np.ndarray:
    """The astronaut's face region, enlarged to a square crop roughly framed like an aligned portrait."""
    return at_face_size(np.ascontiguousarray(astronaut()[30:230, 120:320]))


def test_face_mask_is_the_shared_tool_ellipse():
    m = face_mask()
    assert m.shape == (FACE_SIZE, FACE_SIZE) and m[int(FACE_SIZE * 0.55), FACE_SIZE // 2] and not m[0, 0]
    assert abs(m.sum() - np.pi * int(FACE_SIZE * 0.22) * int(FACE_SIZE * 0.30)) / m.sum() < 0.01
    with pytest.raises(ValueError, match="square"):
        at_face_size(np.zeros((10, 20, 3), np.uint8))


def test_colour_direction_known_answers():
    crop = face_crop()
    before = lab_stats(crop)
    yellow = lab_stats(shift_lab(crop, 2, +30))
    gold, blue = expectation_for("Golden  Statue"), expectation_for("blue skin")
    assert gold.met(gold.shift(before, yellow)) and not blue.met(blue.shift(before, yellow))
    bluer = lab_stats(shift_lab(crop, 2, -30))
    assert blue.met(blue.shift(before, bluer)) and not gold.met(gold.shift(before, bluer))
    # no edit at all never counts as moving in a style's direction
    for prompt in ("golden statue", "blue skin", "marble statue", "zombie"):
        e = expectation_for(prompt)
        assert not e.met(e.shift(before, before))
    grey = lab_stats(np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None], 3, -1))
    marble = expectation_for("marble statue")
    assert marble.met(marble.shift(before, grey))
    assert expectation_for("red hair") is None and expectation_for("a teapot") is None


def test_reference_direction_known_answers():
    crop = face_crop()
    before, reference = lab_stats(crop), lab_stats(shift_lab(crop, 2, +40))
    towards = lab_stats(shift_lab(crop, 2, +20))
    away = lab_stats(shift_lab(crop, 2, -20))
    cos, progress = reference_direction(before, towards, reference)
    assert cos > 0.95 and 0.3 < progress < 0.7
    cos, progress = reference_direction(before, away, reference)
    assert cos < -0.95 and progress < 0


def test_sharpness_ratio_known_answers():
    crop = face_crop()
    assert sharpness_ratio(crop, crop) == pytest.approx(1.0)
    assert sharpness_ratio(cv2.GaussianBlur(crop, (0, 0), 3), crop) < 0.1
    round_trip = at_face_size(cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA))  # what a 128-px output loses
    assert sharpness_ratio(round_trip, crop) < 0.5


def test_spread_is_zero_for_identical_outputs():
    crop = face_crop()
    assert spread([crop, crop.copy(), crop.copy()]) == 0.0
    assert spread([crop, shift_lab(crop, 2, 30)]) > 5
    assert spread([crop]) is None


# ------------------------------------------------------------------------------------ flicker
def moving_texture(n: int, step: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (160, 200, 3), np.uint8), (0, 0), 2)
    return [np.ascontiguousarray(tex[20:140, 20 + step * t : 140 + step * t]) for t in range(n)]


def test_flow_guided_flicker_known_answers():
    from live3dpe.evaluation.clip import input_flows

    inputs = moving_texture(6)
    flows = input_flows(inputs, [np.ones(inputs[0].shape[:2], bool)] * len(inputs))
    floor = guided_warping_error(inputs, flows)
    assert floor < 0.02  # an output that moves exactly like the input
    flicker = [np.clip(f.astype(np.int16) + (25 if t % 2 else -25), 0, 255).astype(np.uint8) for t, f in enumerate(inputs)]
    assert guided_warping_error(flicker, flows) > 0.1
    frozen = [inputs[0]] * len(inputs)  # an output that ignores the motion
    assert guided_warping_error(frozen, flows) > 3 * floor
    assert guided_warping_error(inputs, [None] * (len(inputs) - 1)) is None
    empty = [PairFlow(f.forward, np.zeros_like(f.valid)) for f in flows]
    assert guided_warping_error(inputs, empty) is None


def test_sample_indices_spread_over_the_clip():
    assert sample_indices(60, 12)[0] == 0 and sample_indices(60, 12)[-1] == 59 and len(sample_indices(60, 12)) == 12
    assert sample_indices(3, 12) == [0, 1, 2]


def test_contact_sheet_layout():
    tile = 40
    img = face_crop()
    sheet = contact_sheet([("a", {"input": img, "x": img}), ("b", {"input": img})], ["input", "x", "y"], tile)
    assert sheet.shape == (22 + 2 * tile, 3 * tile, 3) and sheet.dtype == np.uint8
    missing = sheet[22 + tile : 22 + 2 * tile, tile : 2 * tile]
    assert (missing == 96).all()  # a column the row lacks stays grey
    with pytest.raises(ValueError):
        contact_sheet([], ["input"], tile)


def test_write_image_png_exact_jpg_close_and_small(tmp_path):
    photo = np.ascontiguousarray(data.astronaut())
    png, jpg = write_image(tmp_path / "a.png", photo), write_image(tmp_path / "a.jpg", photo)
    back = {p.suffix: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in (png, jpg)}
    assert np.array_equal(back[".png"], photo)
    assert np.abs(back[".jpg"].astype(int) - photo).mean() < 4 and jpg.stat().st_size < png.stat().st_size / 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.png"]  # no part files left
    with pytest.raises(ValueError, match=r"a\.webp.*\.png or \.jpg"):
        write_image(tmp_path / "a.webp", photo)


# ---------------------------------------------------------------------------------- commands
def write_rgb(path, rgb: np.ndarray) -> None:
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def test_eval_real_end_to_end(tmp_path, single_thread, capsys):
    portraits, refs, out = tmp_path / "portraits", tmp_path / "refs", tmp_path / "out"
    portraits.mkdir(), refs.mkdir()
    write_rgb(portraits / "astronaut.png", astronaut())
    write_rgb(portraits / "blank.png", np.full((256, 256, 3), 200, np.uint8))
    (portraits / "broken.jpg").write_bytes(b"not an image")
    (portraits / "notes.txt").write_text("ignored: not an image suffix")
    write_rgb(refs / "astronaut.png", shift_lab(astronaut(), 2, +40))
    rc = main(["eval", "--real", str(portraits), "--references", str(refs), "--prompts", "golden statue", "--yaws=-20,20", "--out", str(out)])
    assert rc == 0
    payload = json.loads((out / "real_faces.json").read_text())
    assert {e["image"] for e in payload["errors"]} == {"blank.png", "broken.jpg"}
    assert next(e for e in payload["errors"] if e["image"] == "blank.png")["error"] == "no face found"
    (row,) = payload["rows"]
    assert row["image"] == "astronaut.png" and row["reference"] == "astronaut.png"
    assert list(row["edits"]) == ["(no prompt)", "golden statue", "reference image"]
    text = row["edits"]["golden statue"]
    assert text["expected"] == "b +8" and set(text["views"]) == {"input", "yaw-20", "yaw+20"}
    view = text["views"]["input"]
    assert {"sharpness_ratio", "lab_shift", "direction_shift", "direction_ok"} <= set(view)
    assert 0 < view["sharpness_ratio"] < 2 and text["ms"] > 0
    assert "ref_cos" in row["edits"]["reference image"]["views"]["yaw+20"]
    assert row["spread"] is not None and row["ceiling"]["sharpness_ratio"] > 0
    if HAS_DLIB:
        assert payload["identity"]["available"] and row["input_face_found"] is True
        assert 0 <= view["id_distance"] <= 1.0 and isinstance(view["same_person"], bool)
        assert row["ceiling"]["id_distance"] < SAME_PERSON  # the input itself, through the output resolution
    summary = payload["summary"]
    assert summary["portraits"] == 1 and summary["ms_per_edit_median"] > 0
    assert set(payload["by_edit"]) == set(row["edits"])
    sheet = cv2.imread(str(out / "contact_sheet.jpg"))
    # one row; input, no prompt, the prompt, reference, its edit, two novel views
    assert sheet is not None and sheet.shape[1] == 7 * 128 and sheet.shape[0] == 22 + 128
    pasted = cv2.imread(str(out / "pasted" / "astronaut" / "golden_statue.png"))
    assert pasted is not None and pasted.shape == astronaut().shape
    md = (out / "real_faces.md").read_text()
    assert "| golden statue | b +8 |" in md and "blank.png" in md and "contact_sheet.jpg" in md
    assert "golden statue" in capsys.readouterr().out


def test_eval_real_reports_bad_input_without_a_traceback(tmp_path, capsys):
    portraits = tmp_path / "p"
    portraits.mkdir()
    write_rgb(portraits / "blank.png", np.full((128, 128, 3), 30, np.uint8))
    assert main(["eval", "--real", str(portraits), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "no portrait" in err and "Traceback" not in err
    assert json.loads((tmp_path / "out" / "real_faces.json").read_text())["errors"] == [{"image": "blank.png", "error": "no face found"}]
    assert main(["eval", "--real", str(tmp_path / "missing")]) == 1
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--real", str(tmp_path / "empty")]) == 1
    assert "no images" in capsys.readouterr().err


def write_clip(path, frames: int = 8) -> None:
    from live3dpe.stream.frame import Frame
    from live3dpe.stream.videofile import VideoFileSink

    img = astronaut()
    sink = VideoFileSink(path, fps=25.0)
    for t in range(frames):  # the astronaut sliding slowly to the right
        m = np.float32([[1, 0, 2 * t], [0, 1, 0]])
        sink.send(Frame(cv2.warpAffine(img, m, (512, 512), borderMode=cv2.BORDER_REFLECT), t, Fraction(1, 25)))
    sink.close()


def test_eval_real_clip_end_to_end(tmp_path, capsys):
    clip = tmp_path / "slide.mp4"
    write_clip(clip)
    out = tmp_path / "out"
    args = ["eval", "--real-clip", str(clip), "--max-frames", "6", "--id-samples", "2", "--prompts", "golden statue", "--out", str(out)]
    assert main(args) == 0
    payload = json.loads((out / "clip_slide.json").read_text())
    assert payload["clip"]["frames"] == 6 and payload["face_pairs"] == 5
    assert [(r["prompt"], r["smoothing"]) for r in payload["rows"]] == [("golden statue", False), ("golden statue", True)]
    for r in payload["rows"]:
        assert r["fps"] > 0 and r["face_tracked"] == 1.0 and 0 <= r["flicker"] < 1
        if HAS_DLIB:
            assert r["id_frames"] == 2 and 0 <= r["id_mean_distance"] <= 1
    assert 0 <= payload["input_flicker"] < 0.05  # a clean slide: flow explains the input almost exactly
    assert "| golden statue | on |" in (out / "clip_slide.md").read_text()
    assert main(["eval", "--real-clip", str(tmp_path / "missing.mp4")]) == 1
    assert "not found" in capsys.readouterr().err


def test_report_embeds_the_real_face_table_sheet_and_clips(tmp_path, monkeypatch):
    import importlib.util as iu
    from pathlib import Path

    spec = iu.spec_from_file_location("bench_report_real", Path(__file__).resolve().parents[1] / "benchmarks" / "report.py")
    report = iu.module_from_spec(spec)
    spec.loader.exec_module(report)
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    assert report.REAL_NOT_MEASURED in report.build_report()
    real = tmp_path / "real_faces"
    real.mkdir()
    (real / "real_faces.md").write_text("# Real faces\n\n| edit | ID distance |\n|---|---|\n| zombie | 0.7 |\n")
    write_rgb(real / "contact_sheet.jpg", face_crop())
    (real / "clip_d9.md").write_text("# Real clip `d9.mp4`\n\n| prompt | smoothing |\n|---|---|\n| zombie | on |\n")
    text = report.build_report()
    assert "| zombie | 0.7 |" in text and "(results/real_faces/contact_sheet.jpg)" in text
    assert "### Real clip `d9.mp4` (`live3dpe eval --real-clip`)" in text and "| zombie | on |" in text
    assert report.REAL_NOT_MEASURED not in text and "# Real faces\n" not in text

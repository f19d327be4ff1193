"""The stream commands end to end through `live3dpe.cli.main`."""
from __future__ import annotations

import av
import numpy as np
import pytest

from live3dpe.cli import main
from live3dpe.stream.synthetic import SyntheticFaceSource
from live3dpe.stream.videofile import probe

pytestmark = pytest.mark.timeout(240)

W, H, FPS, SECONDS = 320, 240, 10, 1.0


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "in.mp4"
    assert main(["sample", str(path), "--seconds", str(SECONDS), "--width", str(W), "--height", str(H), "--fps", str(FPS)]) == 0
    return path


def test_sample_writes_the_demo_clip_with_audio(clip):
    info = probe(clip)
    assert info["frames"] == int(SECONDS * FPS) and (info["width"], info["height"]) == (W, H)
    assert info["audio"]


@pytest.mark.slow
def test_process_keeps_frames_duration_audio_and_edits_only_the_face(clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), str(out), "--prompt", "golden statue", "--mode", "paste"]) == 0
    a, b = probe(clip), probe(out)
    assert b["frames"] == a["frames"]
    assert b["video_duration"] == a["video_duration"]
    assert b["audio"] and abs(b["audio_duration"] - a["audio_duration"]) < 0.05
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left behind

    src = SyntheticFaceSource(W, H, FPS)
    inside, outside = [], []
    for i, (x, y) in enumerate(zip(decode(clip), decode(out), strict=True)):
        diff = np.abs(x.astype(int) - y.astype(int)).max(-1)
        x0, y0, x1, y1 = src.face_box(i / FPS, margin=0.1)
        mask = np.zeros((H, W), bool)
        mask[max(y0, 0) : y1, max(x0, 0) : x1] = True
        outside.append(diff[~mask].mean())
        x0, y0, x1, y1 = src.face_box(i / FPS, margin=2**-0.5 - 1)  # the head sprite itself (face_box allows for its rotation)
        inside.append(diff[max(y0, 0) : y1, max(x0, 0) : x1].mean())
    assert max(outside) < 3  # the rest is untouched (re-encoding noise only)
    assert np.median(inside) > max(5.0, 2 * max(outside))  # the face was edited, well above that noise


@pytest.mark.slow
def test_process_model_failure_on_a_frame_keeps_every_frame(clip, tmp_path, monkeypatch):
    from live3dpe.pipeline import stages

    calls = {"n": 0}
    original = stages.RenderStage.__call__

    def flaky(self, work):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA error: out of memory")
        original(self, work)

    monkeypatch.setattr(stages.RenderStage, "__call__", flaky)
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), str(out), "--prompt", "zombie"]) == 0
    assert probe(out)["frames"] == probe(clip)["frames"]
    assert calls["n"] >= 3


def test_live_synthetic_to_file_in_view_mode(tmp_path):
    out = tmp_path / "live.mp4"
    rc = main(["live", "--source", "synthetic", "--width", "256", "--height", "192", "--fps", "15",
               "--mode", "view", "--view", "yaw=20,pitch=0", "--output", str(out), "--max-frames", "20", "--overlay"])  # fmt: skip
    assert rc == 0
    info = probe(out)
    assert 1 <= info["frames"] <= 20 and (info["width"], info["height"]) == (256, 192)


@pytest.mark.slow
def test_edit_writes_crop_views_orbit_and_mesh(tmp_path):
    import cv2
    from skimage.data import astronaut

    portrait = tmp_path / "portrait.png"
    cv2.imwrite(str(portrait), astronaut()[..., ::-1])
    out = tmp_path / "out"
    rc = main(["edit", str(portrait), "--prompt", "golden statue", "--views", "-30,0,30", "--out", str(out),
               "--orbit-frames", "6", "--mesh", "--mesh-resolution", "48"])  # fmt: skip
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["crop.png", "edited.png", "edited_in_photo.png", "view_yaw-30.png", "view_yaw+0.png",
                            "view_yaw+30.png", "orbit.mp4", "mesh.ply"])  # fmt: skip
    assert probe(out / "orbit.mp4")["frames"] == 6
    header = (out / "mesh.ply").read_bytes()[:300]
    assert header.startswith(b"ply\nformat binary_little_endian") and b"element face" in header
    views = [cv2.imread(str(out / f"view_yaw{v}.png")) for v in ("-30", "+30")]
    assert not np.array_equal(*views)


def test_errors_are_clear_and_leave_no_output(tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert main(["process", str(tmp_path / "missing.mp4"), str(out)]) == 1
    assert "missing.mp4" in capsys.readouterr().err
    assert main(["live", "--source", "synthetic", "--view", "sideways", "--output", str(out)]) == 1
    assert "bad view" in capsys.readouterr().err
    face_less = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(face_less), np.full((200, 200, 3), 128, np.uint8))
    assert main(["edit", str(face_less), "--out", str(tmp_path / "e")]) == 1
    assert "no face" in capsys.readouterr().err
    assert not out.exists()

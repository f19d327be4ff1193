"""Fault injection through `live3dpe.cli.main`: odd inputs, failing stages, full disk, signals.

The model and the face detector are replaced by stand-in stages (`face` marks every frame as
having a face, `edit` inverts it), so these tests exercise the commands' own checks, exit
codes and clean-up in seconds. The rule they pin down: exit status 0 only when the output
is what was asked; otherwise a one-line error, no traceback, and no output left behind.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest
from media import frame_count, truncate, write_clip, write_portrait
from terminal import sigint_as_from_a_terminal

from live3dpe.cli import main
from live3dpe.pipeline import commands
from live3dpe.pipeline import stages as stages_module
from live3dpe.stream.engine import Stage

pytestmark = pytest.mark.timeout(120)


def _face(work) -> None:
    work.obs = "a face"


def _edit(work) -> None:
    work.face = work.output = 255 - work.frame.image


def _fail(work) -> None:
    raise RuntimeError("fuse exploded")


@pytest.fixture
def stand_in(monkeypatch):
    """Replace the model with stand-in stages; `stand_in(stage, ...)` sets the stages; the model is never loaded."""
    chosen = {"stages": [Stage("face", _face), Stage("edit", _edit)]}
    monkeypatch.setattr(commands, "load_editor", lambda args: None)
    monkeypatch.setattr(stages_module, "build_stages", lambda *args, **kwargs: list(chosen["stages"]))

    def use(*stages: Stage) -> None:
        chosen["stages"] = list(stages)

    return use


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the model is loaded: these errors must come before any slow work."""

    def refuse(args):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(commands, "load_editor", refuse)


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_clip(tmp_path / "in.mp4")


def _leftovers(folder: Path, *keep: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p not in keep)


# --- process: exit codes ---------------------------------------------------------------------


def test_process_exits_nonzero_when_every_frame_fails_although_faces_were_found(clip, tmp_path, stand_in, capsys):
    """Defect 2: the fuse stage failed on every frame and `process` exited 0 with an unedited copy."""
    stand_in(Stage("face", _face), Stage("fuse", _fail))
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), str(out)]) == 1
    err = capsys.readouterr().err
    assert "no frame was edited although a face was found in 12 of 12 frames" in err
    assert "fuse exploded" in err and "Traceback" not in err
    assert _leftovers(tmp_path, clip) == []


def test_process_with_a_blank_prompt_is_refused_before_any_work(clip, tmp_path, no_model, capsys):
    """Defect 2's trigger (`--prompt "   "`) and defect 8's `--prompt ""`: refused, not a silent reconstruction."""
    for prompt in ("   ", ""):
        assert main(["process", str(clip), str(tmp_path / "out.mp4"), "--prompt", prompt]) == 1
        assert "--prompt is empty" in capsys.readouterr().err
    assert main(["process", str(clip), str(tmp_path / "out.mp4"), "--prompt", "x" * 301]) == 1
    assert "too long" in capsys.readouterr().err
    assert _leftovers(tmp_path, clip) == []


def test_process_model_failing_on_one_frame_keeps_every_frame_and_warns(clip, tmp_path, stand_in, caplog):
    calls = {"n": 0}

    def flaky(work) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA error: out of memory")
        _edit(work)

    stand_in(Stage("face", _face), Stage("render", flaky))
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), str(out)]) == 0
    assert frame_count(out) == 12
    assert "render failed on 1 (RuntimeError: CUDA error: out of memory)" in caplog.text
    calls["n"] = 0
    assert main(["process", str(clip), str(tmp_path / "strict.mp4"), "--strict"]) == 1
    assert not (tmp_path / "strict.mp4").exists()


def test_process_without_any_face_warns_and_keeps_the_frames(clip, tmp_path, stand_in, caplog):
    stand_in(Stage("nothing", lambda work: None))
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), str(out)]) == 0
    assert frame_count(out) == 12 and "no face found in any of the 12 frames" in caplog.text


def _short_read_is_reported(src, tmp_path, caplog, capsys) -> str:
    """`process` of a 60-frame clip that decodes short: exit 0 with the counts in a warning, exit 1
    under --strict with nothing written. -> the strict run's stderr."""
    out = tmp_path / "out.mp4"
    assert main(["process", str(src), str(out)]) == 0
    written = frame_count(out)
    assert 0 < written < 60
    assert f"declares 60 frames but only {written} could be decoded" in caplog.text
    assert main(["process", str(src), str(tmp_path / "strict.mp4"), "--strict"]) == 1
    err = capsys.readouterr().err
    assert "declares 60 frames" in err
    assert not (tmp_path / "strict.mp4").exists()
    return err


def test_truncated_input_is_a_warning_with_the_counts_and_an_error_with_strict(tmp_path, stand_in, caplog, capsys):
    """Defect 3: an MP4 indexed at the front and cut in half gave a short output, exit 0 and no warning."""
    cut = truncate(write_clip(tmp_path / "cut.mp4", frames=60, faststart=True))
    _short_read_is_reported(cut, tmp_path, caplog, capsys)


def test_corrupt_packets_mid_file_are_a_warning_with_the_counts_and_an_error_with_strict(tmp_path, stand_in, caplog, capsys):
    """Build list: corrupt input. 2 KB of garbage a third of the way in: the broken frames are
    skipped and counted like a short read, never a traceback or a silent short output."""
    src = write_clip(tmp_path / "in.mp4", frames=60)
    data = bytearray(src.read_bytes())
    start = len(data) // 3
    data[start : start + 2048] = np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    src.write_bytes(bytes(data))
    assert "Traceback" not in _short_read_is_reported(src, tmp_path, caplog, capsys)
    assert _leftovers(tmp_path, src, tmp_path / "out.mp4") == []


def test_odd_frame_size_keeps_every_frame(tmp_path, stand_in):
    """Build list: odd input. A 97x63 video (yuv420p needs even sizes) keeps all its frames, padded by one pixel."""
    from fractions import Fraction

    src = tmp_path / "odd.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 97, 63, "yuv420p"
        for i in range(8):
            vf = av.VideoFrame.from_ndarray(np.full((63, 97, 3), 40 + 20 * i, np.uint8), format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, 10)
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    out = tmp_path / "out.mp4"
    assert main(["process", str(src), str(out)]) == 0
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (64, 98, 3)
    assert abs(int(frames[0][:63, :97].mean()) - (255 - 40)) < 6  # the stand-in edit, not a pass-through


@pytest.mark.parametrize(
    ("content", "needle"),
    [(b"", "cannot read"), (b"this is not a video\n" * 10, "cannot read"), (None, "no video stream")],
    ids=["empty", "text", "audio-only"],
)
def test_odd_inputs_are_clear_errors(tmp_path, no_model, capsys, content, needle):
    src = tmp_path / "in.mp4"
    if content is None:
        from live3dpe.stream.sample import write_tone_wav

        src = tmp_path / "in.wav"
        write_tone_wav(src, 0.2)
    else:
        src.write_bytes(content)
    assert main(["process", str(src), str(tmp_path / "out.mp4")]) == 1
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert _leftovers(tmp_path, src) == []


# --- process: the output ---------------------------------------------------------------------


def test_output_that_is_a_directory_is_refused_before_the_run(clip, tmp_path, no_model, capsys):
    """Defect 5: OUT being a directory failed with IsADirectoryError after the whole run, leaving the .part.mp4."""
    folder = tmp_path / "outdir"
    folder.mkdir()
    assert main(["process", str(clip), str(folder)]) == 1
    assert "is a directory" in capsys.readouterr().err
    assert _leftovers(tmp_path, clip) == ["outdir"] and not any(folder.iterdir())


def test_existing_output_is_kept_unless_overwrite_is_given(clip, tmp_path, stand_in, capsys):
    """Defect 9: `process` overwrote an existing OUT without saying so."""
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    assert main(["process", str(clip), str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main(["process", str(clip), str(out), "--overwrite"]) == 0
    assert frame_count(out) == 12


def test_full_disk_is_a_clear_error_and_leaves_no_partial_output(clip, tmp_path, stand_in, monkeypatch, capsys):
    """Defect 5: a full disk surfaced as av.error.OSError after the whole run (patched writer: ENOSPC on frame 4)."""
    import errno

    from live3dpe.stream import videofile

    class FullDisk:
        """The output container, except that writing fails as on a full disk."""

        def __init__(self, container) -> None:
            self.container = container

        def mux(self, packets) -> None:
            raise av.error.OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.container, name)

    original = videofile.VideoFileSink.send

    def send(self, frame):
        if self.frames_written == 4:
            self._out = FullDisk(self._out)
        original(self, frame)

    monkeypatch.setattr(videofile.VideoFileSink, "send", send)
    out = tmp_path / "out.mp4"
    assert main(["process", str(clip), str(out)]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "no space left" in err and "Traceback" not in err
    assert _leftovers(tmp_path, clip) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    rc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode
    if rc != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_full_disk_on_a_real_tiny_filesystem(tmp_path, tiny_disk, stand_in, capsys):
    clip = write_clip(tmp_path / "big.mp4", frames=40, width=320, height=240)
    out = tiny_disk / "out.mp4"
    assert main(["process", str(clip), str(out)]) == 1
    err = capsys.readouterr().err
    assert "no space left" in err and "Traceback" not in err
    assert list(tiny_disk.iterdir()) == []


# --- signals --------------------------------------------------------------------------------

_SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    from live3dpe.cli import main
    from live3dpe.pipeline import commands, stages
    from live3dpe.stream.engine import Stage

    def slow(work):
        time.sleep(0.2)
        work.obs = "a face"
        work.face = work.output = 255 - work.frame.image

    commands.load_editor = lambda args: None
    stages.build_stages = lambda *args, **kwargs: [Stage("slow", slow)]
    sys.exit(main(["process", sys.argv[1], sys.argv[2]]))
    """
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_run_leaves_no_partial_file(tmp_path, sig, code):
    """Defect 6: SIGTERM left a hidden `.part.mp4` (SIGINT was already clean)."""
    clip = write_clip(tmp_path / "in.mp4", frames=60)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_RUN, str(clip), str(out_dir / "out.mp4")], stderr=subprocess.PIPE, text=True,
        preexec_fn=sigint_as_from_a_terminal,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".part.mp4") for p in out_dir.iterdir()):  # the run is writing
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() is not None else "no .part file"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []


# --- engine-level faults ----------------------------------------------------------------------


def test_sink_that_raises_stops_the_run_with_its_error_and_aborts_the_output(tmp_path):
    from live3dpe.stream.engine import Engine
    from live3dpe.stream.sources import VideoFileSource

    class FailingSink:
        def __init__(self) -> None:
            self.sent, self.closed_with = 0, None

        def send(self, frame) -> None:
            self.sent += 1
            if self.sent == 5:
                raise RuntimeError("sink broke")

        def close(self, abort: bool = False) -> None:
            self.closed_with = abort

    sink = FailingSink()
    with pytest.raises(RuntimeError, match="sink broke"):
        Engine(VideoFileSource(write_clip(tmp_path / "in.mp4", frames=30)), sink, [Stage("edit", _edit)], live=False).run()
    assert sink.closed_with is True and sink.sent == 5


# --- edit -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--orbit-frames", "-5"], "--orbit-frames must be within 1.."),
        (["--views", "nan"], "--views must be finite"),
        (["--views", "-30,200"], "within ±90"),
        (["--views", "left"], "comma-separated degrees"),
        (["--mesh-resolution", "4"], "--mesh-resolution must be within"),
        (["--prompt", "   "], "--prompt is empty"),
        (["--prompt", ""], "--prompt is empty"),
    ],
    ids=["orbit-frames", "views-nan", "views-range", "views-text", "mesh-resolution", "prompt-spaces", "prompt-empty"],
)
def test_edit_validates_every_argument_before_writing_anything(tmp_path, no_model, capsys, extra, needle):
    """Defect 8: `--orbit-frames -5`, `--views nan` and a prompt of spaces failed after PNGs were in DIR;
    `--prompt ""` silently reconstructed."""
    portrait = write_portrait(tmp_path / "face.png")
    out = tmp_path / "out"
    assert main(["edit", str(portrait), "--out", str(out), *extra]) == 1
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def test_edit_of_a_truncated_jpeg_says_it_cannot_be_decoded(tmp_path, no_model, capsys):
    """Defect 8: a truncated JPEG was reported as "no face found"."""
    portrait = truncate(write_portrait(tmp_path / "face.jpg"))
    assert main(["edit", str(portrait), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "cannot decode image" in err and "truncated" in err and "no face" not in err
    assert not (tmp_path / "out").exists()


def test_edit_out_pointing_at_a_file_is_a_clear_error(tmp_path, no_model, capsys):
    """Defect 5: `edit --out FILE` raised FileExistsError."""
    portrait = write_portrait(tmp_path / "face.png")
    target = tmp_path / "taken.txt"
    target.write_text("keep")
    assert main(["edit", str(portrait), "--out", str(target)]) == 1
    assert "is a file" in capsys.readouterr().err and target.read_text() == "keep"


class _FakeService:
    """PortraitService stand-in: a fixed edit; the orbit video fails when asked to."""

    fail_orbit = False

    def __init__(self, editor, estimator=None) -> None:
        from types import SimpleNamespace

        self.runner = SimpleNamespace(reproduces_input=False)

    def edit(self, image, text=None, reference=None):
        from types import SimpleNamespace

        obs = SimpleNamespace(crop_affine=np.array([[1, 0, 0], [0, 1, 0]], np.float32), crop_size=64, yaw=0.0, pitch=0.0,
                              landmarks=np.zeros((478, 3), np.float32))
        face = np.full((64, 64, 3), 200, np.uint8)
        return SimpleNamespace(crop=face, edited=face, planes=None, observation=obs)

    def view(self, planes, yaw, pitch):
        return np.zeros((64, 64, 3), np.uint8)

    def orbit_video(self, planes, path, frames, fps):
        if self.fail_orbit:
            raise RuntimeError("render failed mid-orbit")
        Path(path).write_bytes(b"mp4")

    def mesh(self, planes, path, resolution):
        Path(path).write_bytes(b"ply")


@pytest.fixture
def fake_service(monkeypatch):
    import live3dpe.pipeline.portrait as portrait
    import live3dpe.pose

    monkeypatch.setattr(commands, "load_editor", lambda args: None)
    monkeypatch.setattr(live3dpe.pose, "FacePoseEstimator", lambda **kw: None)
    monkeypatch.setattr(portrait, "PortraitService", _FakeService)
    monkeypatch.setattr(_FakeService, "fail_orbit", False)
    return _FakeService


def test_edit_failure_midway_leaves_no_partial_output(tmp_path, fake_service, capsys):
    """Defect 8: a failure after the first PNGs left them in DIR."""
    portrait = write_portrait(tmp_path / "face.png")
    out = tmp_path / "new" / "out"
    fake_service.fail_orbit = True
    assert main(["edit", str(portrait), "--out", str(out), "--prompt", "statue"]) == 1
    assert "render failed mid-orbit" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # nor the folders made for it

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert main(["edit", str(portrait), "--out", str(existing), "--prompt", "statue"]) == 1
    assert _leftovers(existing) == ["notes.txt"]

    fake_service.fail_orbit = False
    assert main(["edit", str(portrait), "--out", str(existing), "--prompt", "statue", "--mesh", "--views", "0"]) == 0
    assert _leftovers(existing) == ["crop.png", "edited.png", "edited_in_photo.png", "mesh.ply", "notes.txt", "orbit.mp4", "view_yaw+0.png"]


def test_sigterm_handler_is_restored_after_the_command(clip, tmp_path, stand_in):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["process", str(clip), str(tmp_path / "out.mp4")]) == 0
    assert signal.getsignal(signal.SIGTERM) is before
    assert os.getpid()  # the handler never fired

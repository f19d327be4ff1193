"""Sources and sinks: video files (atomic, audio), image folders, synthetic face, virtual camera, window, WebRTC."""
from __future__ import annotations

import asyncio
import os
import signal
import threading
from fractions import Fraction

import numpy as np
import pytest

from live3dpe.stream.control import Control
from live3dpe.stream.engine import Engine, StopStream
from live3dpe.stream.frame import EndOfStream, Frame
from live3dpe.stream.sample import write_sample
from live3dpe.stream.sinks import VirtualCamSink, WindowSink, virtualcam_help
from live3dpe.stream.sources import ImageFolderSource, VideoFileSource, open_source, read_image
from live3dpe.stream.synthetic import SyntheticFaceSource
from live3dpe.stream.videofile import VideoFileSink, probe

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_sample(tmp_path_factory.mktemp("clip") / "sample.mp4", seconds=1.0, width=160, height=120, fps=20)


def frames_of(source):
    out = []
    while True:
        try:
            out.append(source.recv())
        except EndOfStream:
            return out


def test_sample_clip_has_video_and_audio_of_the_asked_length(clip):
    info = probe(clip)
    assert info["frames"] == 20 and (info["width"], info["height"]) == (160, 120)
    assert info["audio"] and info["audio_codec"] == "aac"
    assert abs(info["video_duration"] - 1.0) < 1e-6 and abs(info["audio_duration"] - 1.0) < 0.1


def test_video_source_keeps_file_timing(clip):
    src = VideoFileSource(clip)
    frames = frames_of(src)
    src.close()
    assert len(frames) == src.frame_count == 20
    assert [f.pts for f in frames] == sorted(f.pts for f in frames)
    assert abs(frames[-1].time - 19 / 20) < 1e-6 and src.has_audio


def test_video_sink_is_atomic_and_copies_audio(clip, tmp_path):
    out = tmp_path / "copy.mp4"
    src = VideoFileSource(clip)
    sink = VideoFileSink(out, fps=src.fps, audio_from=clip)
    for f in frames_of(src):
        sink.send(f)
        assert not out.exists()  # nothing that looks complete before close
    sink.close()
    assert [p.name for p in tmp_path.iterdir()] == ["copy.mp4"]
    a, b = probe(clip), probe(out)
    assert b["frames"] == a["frames"] and b["video_duration"] == a["video_duration"]
    assert b["audio"] and abs(b["audio_duration"] - a["audio_duration"]) < 0.05


def test_aborted_video_sink_leaves_nothing(tmp_path):
    sink = VideoFileSink(tmp_path / "x.mp4", fps=10)
    sink.send(Frame(np.zeros((32, 32, 3), np.uint8), 0, Fraction(1, 10)))
    sink.close(abort=True)
    assert list(tmp_path.iterdir()) == []


def test_written_video_is_world_readable_even_under_a_strict_umask(tmp_path):
    old = os.umask(0o077)
    try:
        sink = VideoFileSink(tmp_path / "x.mp4", fps=10)
        sink.send(Frame(np.zeros((32, 32, 3), np.uint8), 0, Fraction(1, 10)))
        sink.close()
    finally:
        os.umask(old)
    assert (tmp_path / "x.mp4").stat().st_mode & 0o777 == 0o644


def test_engine_sink_failure_leaves_no_half_written_file(tmp_path):
    class Exploding(VideoFileSink):
        def send(self, frame):
            if self.frames_written == 5:
                raise OSError("disk full")
            super().send(frame)

    sink = Exploding(tmp_path / "out.mp4", fps=10)
    with pytest.raises(OSError):
        Engine(SyntheticFaceSource(96, 96, frames=30), sink, live=False).run()
    assert list(tmp_path.iterdir()) == []


def test_video_sink_pads_odd_sizes_and_rejects_size_changes(tmp_path):
    with VideoFileSink(tmp_path / "odd.mp4", fps=10) as sink:
        sink.send(Frame(np.full((33, 47, 3), 90, np.uint8), 0, Fraction(1, 10)))
        with pytest.raises(ValueError, match="size changed"):
            sink.send(Frame(np.zeros((64, 64, 3), np.uint8), 1, Fraction(1, 10)))
    info = probe(tmp_path / "odd.mp4")
    assert (info["width"], info["height"]) == (48, 34)


def test_video_sink_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="output folder"):
        VideoFileSink(tmp_path / "nope" / "a.mp4")
    with pytest.raises(ValueError, match=".mp4"):
        VideoFileSink(tmp_path / "a.gif")


def test_image_folder_source_names_the_unreadable_file(tmp_path, clip):
    import cv2

    frames = frames_of(VideoFileSource(clip))[:3]
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), f.image[..., ::-1])
    (tmp_path / "001.png").write_bytes(b"not an image")
    src = ImageFolderSource(tmp_path, fps=10)
    assert src.recv().image.shape == (120, 160, 3)
    with pytest.raises(ValueError, match="001.png"):
        src.recv()
    assert np.array_equal(src.recv().image, frames[2].image)
    with pytest.raises(EndOfStream):
        src.recv()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderSource(tmp_path / "empty")


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_open_source_rejects_unknown_spec():
    with pytest.raises(FileNotFoundError, match="synthetic"):
        open_source("no-such-thing.mp4")


def test_synthetic_face_moves_smoothly_and_is_reproducible():
    a = SyntheticFaceSource(128, 96, frames=3)
    b = SyntheticFaceSource(128, 96, frames=3)
    fa, fb = frames_of(a), frames_of(b)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(fa, fb, strict=True))
    assert not np.array_equal(fa[0].image, fa[2].image)
    diff = np.abs(fa[0].image.astype(int) - fa[1].image.astype(int)).mean()
    assert 0 < diff < 10  # moves, but smoothly
    x0, y0, x1, y1 = a.face_box(0.0)
    assert 0 < x0 < x1 < 128 + 64 and y1 > y0


@pytest.mark.slow
def test_synthetic_face_is_detected_by_mediapipe():
    import mediapipe as mp

    src = SyntheticFaceSource(640, 480, frames=30)
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
    found = [mesh.process(f.image).multi_face_landmarks is not None for f in frames_of(src)[::5]]
    assert all(found)


# virtual camera ---------------------------------------------------------------------
class RecordingBackend:
    """A pyvirtualcam backend that keeps frames in memory (no kernel module needed)."""

    instances: list = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self.width, self.height, self.frames, self.closed = width, height, [], False
        RecordingBackend.instances.append(self)

    def send(self, frame):
        self.frames.append(frame.copy())

    def close(self):
        self.closed = True

    def device(self):
        return "test-cam"

    def native_fourcc(self):
        return None


class NoDeviceBackend(RecordingBackend):
    def __init__(self, **kw):
        raise RuntimeError("No v4l2 loopback device found")


def test_virtualcam_sink_through_registered_backend():
    import pyvirtualcam

    pyvirtualcam.register_backend("live3dpe-test", RecordingBackend)
    RecordingBackend.instances.clear()
    src = SyntheticFaceSource(96, 64, frames=5)
    Engine(src, VirtualCamSink(fps=30, backend="live3dpe-test"), live=False).run()
    (backend,) = RecordingBackend.instances
    assert (backend.width, backend.height) == (96, 64) and len(backend.frames) == 5 and backend.closed
    assert np.array_equal(backend.frames[2].reshape(64, 96, 3), SyntheticFaceSource(96, 64).render(2 / 30))


def test_virtualcam_missing_backend_says_what_to_do():
    import pyvirtualcam

    pyvirtualcam.register_backend("live3dpe-missing", NoDeviceBackend)
    sink = VirtualCamSink(backend="live3dpe-missing")
    with pytest.raises(RuntimeError, match="modprobe v4l2loopback exclusive_caps=1"):
        sink.send(Frame(np.zeros((64, 64, 3), np.uint8), 0, Fraction(1, 30)))
    assert "OBS" not in virtualcam_help()  # Linux here


# preview window ---------------------------------------------------------------------
def test_window_sink_without_display_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(RuntimeError, match="no display"):
        WindowSink(Control())


def test_window_hotkeys_change_control(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":99")  # constructing only; no window is opened
    control = Control()
    win = WindowSink(control)
    for key in "mspv":
        win.handle_key(ord(key))
    state = control.get()
    assert state.mirror and not state.smoothing and state.passthrough and state.view.kind == "fixed"
    with pytest.raises(StopStream):
        win.handle_key(ord("q"))


# WebRTC -----------------------------------------------------------------------------
@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)


def test_track_source_reads_an_aiortc_track_until_it_ends(loop):
    from aiortc import VideoStreamTrack

    from live3dpe.stream.webrtc import TrackSource

    track = VideoStreamTrack()  # aiortc's own test pattern track
    src = TrackSource(track, loop)
    frames = [src.recv() for _ in range(3)]
    assert frames[0].image.shape == (480, 640, 3) and frames[2].pts > frames[0].pts
    track.stop()
    with pytest.raises(EndOfStream):
        src.recv()


def test_track_sink_returns_the_latest_output(loop):
    from live3dpe.stream.webrtc import TrackSink

    sink = asyncio.run_coroutine_threadsafe(_make_sink(loop), loop).result(5)
    img = np.zeros((48, 64, 3), np.uint8)
    sink.send(Frame(img, 0, Fraction(1, 30)))
    img2 = np.full((48, 64, 3), 200, np.uint8)
    sink.send(Frame(img2, 1, Fraction(1, 30)))
    vf = asyncio.run_coroutine_threadsafe(sink.recv(), loop).result(5)
    assert np.array_equal(vf.to_ndarray(format="rgb24"), img2)
    sink.close()
    assert isinstance(sink, TrackSink)


async def _make_sink(loop):
    from live3dpe.stream.webrtc import TrackSink

    return TrackSink(loop)


@pytest.mark.parametrize("live", [True, False])
def test_ctrl_c_commits_a_live_recording_and_aborts_an_offline_one(tmp_path, live):
    import _thread

    class InterruptAfter(VideoFileSink):
        def send(self, frame):
            super().send(frame)
            if self.frames_written == 5:
                _thread.interrupt_main()  # what Ctrl+C does to the main thread

    out = tmp_path / "rec.mp4"
    engine = Engine(SyntheticFaceSource(96, 96, frames=None), InterruptAfter(out, fps=30), live=live)
    # interrupt_main does nothing while SIGINT is ignored, as it is in a job started with `&`
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if live:
            engine.run()
            assert probe(out)["frames"] >= 5 and [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]
        else:
            with pytest.raises(KeyboardInterrupt):
                engine.run()
            assert list(tmp_path.iterdir()) == []
    finally:
        signal.signal(signal.SIGINT, previous)


def test_truncated_file_ends_the_stream_cleanly(tmp_path):
    full = tmp_path / "full.mkv"
    src = SyntheticFaceSource(96, 96, fps=10, frames=30)
    with VideoFileSink(full, fps=10) as sink:
        for f in frames_of(src):
            sink.send(f)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # the source ends mid-stream
    out = tmp_path / "out.mp4"
    stats = Engine(VideoFileSource(cut), VideoFileSink(out, fps=10), live=False).run()
    assert 0 < probe(out)["frames"] == stats.frames_out < 30

"""The Ray Serve back-end (`live3dpe serve --backend ray`): a local Ray instance on the CPU gives
what the in-process runner gives, frame for frame, for streams alone and at once; a frame is one
round trip (`edit`), the stream's smoothing kept on the replica that serves it."""
from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch

from live3dpe.cli import main
from live3dpe.model.cameras import Camera
from live3dpe.model.editor import Editor
from live3dpe.model.types import Features, Guide, Planes, PromptEmbedding
from live3dpe.pipeline.batching import RunnerTimeout
from live3dpe.pipeline.runner import ModelRunner
from live3dpe.tracking import PlanesSmoother

serve = pytest.importorskip("ray.serve", reason="needs the serve extra: pip install 'live3dpe[serve]'")
from live3dpe.pipeline.ray_backend import RayRunner, WireFormat  # noqa: E402

# the tests on Ray are marked slow: a local Ray instance and its Serve app start in about a
# minute on a busy 2-core machine
pytestmark = pytest.mark.timeout(600)

VIEW = Camera.from_yaw_pitch(0.35, -0.05)


@pytest.fixture(scope="module")
def editor() -> Editor:
    return Editor.load("default")


@pytest.fixture(scope="module")
def remote(editor):
    runner = RayRunner.start(editor=editor, local_cpus=2, num_cpus=1, batch_wait_ms=20, timeout_s=120)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def inline(editor) -> ModelRunner:
    return ModelRunner(editor, cpu_threads=1)  # as each replica stage: 1 CPU / 3 stages


def crops(editor: Editor, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    r = editor.crop_resolution
    return [rng.integers(0, 256, (r, r, 3), dtype=np.uint8) for _ in range(n)]


def frame(runner: ModelRunner, crop: np.ndarray, camera: Camera, prompt: PromptEmbedding | None, mode: str) -> tuple:
    """What the encode, fuse and render stages do for one frame in `mode` (paste: input camera)."""
    features = runner.encode(crop, camera, geometry=runner.needs_geometry(mode))
    planes = runner.fuse(features, prompt)
    return features, planes, runner.render(planes, camera if mode == "paste" else VIEW)


def assert_same(a: Features | Planes, b: Features | Planes) -> None:
    """Two Features / Planes agree; the guide's image exactly (it travels as its pixels)."""
    for x, y in zip(*(((o.high, o.f) if isinstance(o, Features) else (o.tensor,)) for o in (a, b))):
        assert (x is None) == (y is None)
        if x is not None:
            torch.testing.assert_close(y, x, atol=1e-5, rtol=1e-5)
    assert torch.equal(b.guide.image, a.guide.image) and torch.equal(b.guide.label, a.guide.label)
    assert (a.guide.edit is None) == (b.guide.edit is None)
    if a.guide.edit is not None:
        torch.testing.assert_close(b.guide.edit, a.guide.edit, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["paste", "view"])
@pytest.mark.parametrize("text", ["golden statue", None])
def test_outputs_match_the_in_process_runner(remote, inline, editor, mode, text):
    crop = crops(editor, 1)[0]
    camera = Camera.from_yaw_pitch(math.radians(8), math.radians(-3))
    prompt = inline.encode_prompt(text)
    expected = frame(inline, crop, camera, prompt, mode)
    got = frame(remote, crop, camera, remote.encode_prompt(text), mode)
    assert_same(expected[0], got[0])
    assert_same(expected[1], got[1])
    assert got[2].dtype == np.uint8 and got[2].shape == expected[2].shape
    assert np.abs(got[2].astype(int) - expected[2].astype(int)).max() <= 1


def round_trips(runner: RayRunner, monkeypatch, largest: list[int] | None = None) -> list[str]:
    """The kinds of the calls `runner` makes on its handle from now on (and into `largest`, the
    bytes of each call's largest array)."""
    calls: list[str] = []
    call = runner._call

    def counted(kind, *args, **kwargs):
        calls.append(kind)
        if largest is not None:
            largest.append(max(_arrays(args), default=0))
        return call(kind, *args, **kwargs)

    monkeypatch.setattr(runner, "_call", counted)
    return calls


def _arrays(value) -> list[int]:
    if isinstance(value, np.ndarray):
        return [value.nbytes]
    return [n for v in value for n in _arrays(v)] if isinstance(value, tuple) else []


def still_crops(editor: Editor, n: int) -> list[np.ndarray]:
    """n noisy frames of one still face (motion 0: the smoothing weighs the past most, 10-90 grey
    levels on this model, so a wrong past shows)."""
    rng, base = np.random.default_rng(3), crops(editor, 1)[0]
    return [np.clip(base.astype(int) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "text", "smoothing"), [("paste", "golden statue", True), ("view", "golden statue", True),
                                                         ("view", None, False)])  # fmt: skip
def test_an_edit_is_one_round_trip_smoothed_as_in_process(remote, inline, editor, mode, text, smoothing, monkeypatch):
    """Four frames, the smoother reset after the second (as a new prompt does): the faces are the
    in-process runner's, one round trip a frame, and the smoothing state stays on the replica (no
    request carries an array larger than the crop; view mode's triplane average is 0.8 MB)."""
    camera = Camera.from_yaw_pitch(math.radians(8), math.radians(-3))
    view, geometry = camera if mode == "paste" else VIEW, inline.needs_geometry(mode)
    here, there = (PlanesSmoother() if smoothing else None for _ in range(2))
    largest: list[int] = []
    calls = round_trips(remote, monkeypatch, largest)
    for i, crop in enumerate(still_crops(editor, 4)):
        if i == 2 and smoothing:
            here.reset()
            there.reset()
        expected = inline.edit(crop, camera, inline.encode_prompt(text), view, geometry, here, 0.0)
        got = remote.edit(crop, camera, remote.encode_prompt(text), view, geometry, there, 0.0)
        assert got.dtype == np.uint8 and np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert calls == ["edit"] * 4 and max(largest) == editor.crop_resolution**2 * 3
    if smoothing:
        assert there.triplane.average is None and there.edit.average is None  # the front end's copy stays unused


@pytest.mark.slow
def test_a_stream_whose_frame_went_missing_starts_its_smoothing_afresh(remote, inline, editor):
    """A frame the replica never saw (lost on the way, or served elsewhere) must not leave the
    stream blending with an older past: the replica restarts its smoothing, as a fresh smoother
    would. Then two streams in turns: each continues its own past."""
    camera = Camera.from_yaw_pitch(math.radians(8), math.radians(-3))
    prompt = inline.encode_prompt("golden statue")
    frames = still_crops(editor, 3)
    there = PlanesSmoother()
    for crop in frames[:2]:
        remote.edit(crop, camera, prompt, VIEW, True, there, 0.0)
    remote.streams.tick(there)  # a frame sent but never seen by the replica
    fresh = inline.edit(frames[2], camera, prompt, VIEW, True, PlanesSmoother(), 0.0)
    got = remote.edit(frames[2], camera, prompt, VIEW, True, there, 0.0)
    assert np.abs(got.astype(int) - fresh.astype(int)).max() <= 1
    streams = [(PlanesSmoother(), PlanesSmoother(), frames[0]), (PlanesSmoother(), PlanesSmoother(), frames[2])]
    for _ in range(2):  # two streams' frames interleaved: each continues its own past
        for here, there, crop in streams:
            expected = inline.edit(crop, camera, prompt, VIEW, True, here, 0.0)
            got = remote.edit(crop, camera, prompt, VIEW, True, there, 0.0)
            assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["paste", "view"])
def test_the_pipeline_gives_the_same_frames(remote, editor, mode, monkeypatch):
    """The product stages (pose, one edit stage with smoothing, compose) on a moving face, the
    prompt changed on the way: frame for frame the output of the in-process runner's stages
    (pose, encode, fuse with smoothing, render, compose), one round trip a frame."""
    from live3dpe.pipeline.stages import build_stages, run_once
    from live3dpe.pipeline.work import FaceWork
    from live3dpe.stream.control import Control
    from live3dpe.stream.synthetic import SyntheticFaceSource

    source = SyntheticFaceSource(320, 240, fps=10, frames=4)
    control = Control(prompt_text="golden statue", mode=mode)
    local, served = build_stages(editor, cpu_threads=1), build_stages(remote)
    assert [s.name for s in served] == ["pose", "edit", "compose"]
    calls = round_trips(remote, monkeypatch)
    for i in range(4):
        if i == 2:
            control.update(prompt_text="a zombie")
        frame = source.recv()
        expected = run_once(local, FaceWork(frame, control.get()))
        work = FaceWork(frame, control.get())
        got = run_once(served, work)
        assert work.failed is None and work.face is not None
        assert got.shape == expected.shape and np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    assert calls == ["edit"] * 4


@pytest.mark.slow
def test_streams_at_once_get_what_each_would_alone(remote, inline, editor):
    """Four streams in parallel, paste and view, with and without prompts: requests that cannot
    share a model call (with and without geometry) are split within a Serve batch."""
    images = crops(editor, 4)
    cams = [Camera.from_yaw_pitch(math.radians(y), 0.0) for y in (0, 10, -15, 5)]
    modes = ["paste", "view", "paste", "view"]
    prompts = [inline.encode_prompt("golden statue"), None, inline.encode_prompt("a zombie"), inline.encode_prompt("golden statue")]
    expected = [frame(inline, images[i], cams[i], prompts[i], modes[i])[2] for i in range(4)]
    got: list = [None] * 4
    errors: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            got[i] = frame(remote, images[i], cams[i], prompts[i], modes[i])[2]
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for e, g in zip(expected, got):
        assert np.abs(e.astype(int) - g.astype(int)).max() <= 1


@pytest.mark.slow
def test_a_failing_request_fails_alone(remote, inline, editor):
    features = [inline.encode(image, Camera.frontal(), geometry=False) for image in crops(editor, 3)]
    bad = PromptEmbedding(torch.zeros(1, 3, editor.config.ref_dim + 1), "text", "wrong width")
    out: list = [None] * 3

    def stream(i: int) -> None:
        try:
            out[i] = remote.fuse(features[i], bad if i == 1 else None)
        except Exception as err:  # noqa: BLE001 - checked below
            out[i] = err

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(out[1], ValueError) and "prompt tokens" in str(out[1])
    assert not isinstance(out[0], Exception) and not isinstance(out[2], Exception)


@pytest.mark.slow
def test_a_late_answer_gives_the_frame_up(remote, editor):
    hurried = RayRunner(editor, remote.handle, timeout_s=0.001)
    with pytest.raises(RunnerTimeout):
        hurried.encode(crops(editor, 1)[0], Camera.frontal(), geometry=True)


@pytest.mark.slow
def test_no_http_port_and_token_authentication(remote):
    """Handles only: Serve runs no HTTP proxy; the local instance's own ports take Ray's token."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    assert not serve.status().proxies
    assert is_token_auth_enabled()


def test_a_guide_not_made_from_pixels_travels_as_floats(inline, editor):
    features = inline.encode(crops(editor, 1)[0], Camera.frontal(), geometry=False)
    wire = WireFormat(editor)
    packed = wire.pack_features(features)
    assert packed[2][0].dtype == np.uint8  # pixels, a quarter of the floats' bytes
    shifted = Features(None, None, Guide(features.guide.image * 0.5, features.guide.label))
    packed = wire.pack_features(shifted)
    assert packed[2][0].dtype == np.float32
    assert torch.equal(wire.unpack_features(packed).guide.image, shifted.guide.image)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["serve", "--replicas", "2"], "--backend ray"),
        (["serve", "--ray-address", "auto"], "--backend ray"),
        (["serve", "--backend", "ray", "--runner", "per-peer"], "--backend local"),
    ],
)
def test_ray_flags_need_the_ray_backend(argv, needle, capsys):
    assert main(argv) == 1
    assert needle in capsys.readouterr().err

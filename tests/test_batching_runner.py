"""The shared batching runner: results match the inline runner's, and streams stay independent;
whole frames in one batch (`batched_edit`, the Ray back end's call) match their steps run alone."""
from __future__ import annotations

import math
import threading
import time
import warnings

import numpy as np
import pytest
import torch

from live3dpe.model.cameras import Camera
from live3dpe.model.editor import Editor
from live3dpe.pipeline.batching import BatchingRunner, RunnerTimeout, batched_edit
from live3dpe.pipeline.runner import ModelRunner

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=["small", "tiny"])
def editor(request) -> Editor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random weights
        return Editor.load(request.param)


def crops(editor: Editor, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    r = editor.crop_resolution
    return [rng.integers(0, 255, (r, r, 3), dtype=np.uint8) for _ in range(n)]


def in_parallel(fn, n: int) -> list:
    """fn(i) for i < n, each in its own thread started at once (as n streams would)."""
    out: list = [None] * n
    errors: list = []

    def run(i: int) -> None:
        try:
            out[i] = fn(i)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def test_batched_streams_get_what_each_would_alone(editor):
    """Four streams at once: mixed prompts (text, image, none, different token counts), mixed
    cameras, paste (input camera) and view (virtual camera) renders."""
    n = 4
    images = crops(editor, n)
    cams = [Camera.from_yaw_pitch(math.radians(y), math.radians(p)) for y, p in ((0, 0), (12, -4), (-20, 5), (8, 8))]
    inline = ModelRunner(editor, cpu_threads=2)
    prompts = [inline.encode_prompt("golden statue"), inline.encode_prompt(image=images[3]), None,
               inline.encode_prompt("a very pale vampire with white hair and red eyes")]  # fmt: skip
    views = [cams[0], Camera.from_yaw_pitch(0.3, 0.0), cams[2], Camera.from_yaw_pitch(-0.2, 0.1)]

    def alone(i: int) -> np.ndarray:
        planes = inline.fuse(inline.encode(images[i], cams[i], geometry=True), prompts[i])
        return inline.render(planes, views[i])

    expected = [alone(i) for i in range(n)]
    runner = BatchingRunner(editor, max_batch=n, max_wait_ms=200)
    try:

        def stream(i: int) -> np.ndarray:
            planes = runner.fuse(runner.encode(images[i], cams[i], geometry=True), prompts[i])
            return runner.render(planes, views[i])

        got = in_parallel(stream, n)
        assert max(runner.stats.mean_batch().values()) > 1  # they really shared batches
    finally:
        runner.close()
    for e, g in zip(expected, got):
        assert np.abs(e.astype(int) - g.astype(int)).max() <= 2


def test_whole_frames_in_one_batch_get_what_their_steps_give_alone(editor):
    """`batched_edit` on two frames of four streams: paste (no geometry) and view, prompts or none,
    smoothing on (the second frame blends with the first) or off. Each face and smoother end as
    encode, fuse, smoothing and render leave them alone; a request failing at fuse (a prompt of
    the wrong width) fails alone and leaves its smoother as it was."""
    from live3dpe.model.types import PromptEmbedding
    from live3dpe.tracking import PlanesSmoother

    inline = ModelRunner(editor, cpu_threads=2)
    images = crops(editor, 8)
    first, second = images[:4], images[4:]  # planes of random weights barely differ: no cut, the averages blend
    geometry = [inline.needs_geometry(m) for m in ("paste", "view", "paste", "view")]
    cams = [Camera.from_yaw_pitch(math.radians(y), 0.0) for y in (0, 12, -20, 8)]
    views = [cams[0], Camera.from_yaw_pitch(0.3, 0.0), cams[2], Camera.from_yaw_pitch(-0.2, 0.1)]
    bad = PromptEmbedding(torch.zeros(1, 3, editor.config.ref_dim + 1), "text", "wrong width")
    prompts = [inline.encode_prompt("golden statue"), None, inline.encode_prompt("a zombie"), bad]
    smoothing = (True, True, False, True)
    batched, alone = ([PlanesSmoother() if on else None for on in smoothing] for _ in range(2))

    def steps(i: int, crop: np.ndarray) -> np.ndarray:
        planes = inline.fuse(inline.encode(crop, cams[i], geometry=geometry[i]), prompts[i])
        if alone[i] is not None:
            with inline.running():
                planes = alone[i](planes, 0.1)
        return inline.render(planes, views[i])

    for frame in (first, second):
        with inline.running():
            got = batched_edit(editor, [(frame[i], cams[i], geometry[i], prompts[i], views[i], batched[i], 0.1) for i in range(4)])
        for i in range(3):
            assert np.abs(got[i].astype(int) - steps(i, frame[i]).astype(int)).max() <= 2
        assert isinstance(got[3], ValueError)
    for b, a in zip(batched[:2], alone[:2]):
        for x, y in ((b.triplane.average, a.triplane.average), (b.edit.average, a.edit.average)):
            assert (x is None) == (y is None)
            if x is not None:
                torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)
    assert batched[3].triplane.average is None and batched[3].edit.average is None


def test_a_failing_request_fails_alone(editor):
    runner = BatchingRunner(editor, max_batch=4, max_wait_ms=200, timeout_s=5)
    try:
        from live3dpe.model.types import PromptEmbedding

        images = crops(editor, 3)
        features = [ModelRunner(editor).encode(image, Camera.frontal()) for image in images]
        bad = PromptEmbedding(torch.zeros(1, 3, editor.config.ref_dim + 1), "text", "wrong width")

        def stream(i: int):
            try:
                return runner.fuse(features[i], bad if i == 1 else None)
            except ValueError as err:
                return err

        out = in_parallel(stream, 3)
        assert isinstance(out[1], ValueError) and out[0] is not None and out[2] is not None
        assert not isinstance(out[0], Exception) and not isinstance(out[2], Exception)
    finally:
        runner.close()


def test_a_stalled_stream_does_not_hold_up_the_others(editor):
    """Stream A stops (its thread blocks) between requests; stream B keeps getting results at its
    own pace, and after the runner closes a call fails at once instead of waiting."""
    runner = BatchingRunner(editor, max_batch=4, max_wait_ms=5, timeout_s=1.0)
    image = crops(editor, 1)[0]
    try:
        stall = threading.Event()

        def stream_a() -> None:
            runner.encode(image, Camera.frontal(), geometry=runner.needs_geometry("paste"))
            stall.wait(10)  # stuck (e.g. its sink blocks)

        a = threading.Thread(target=stream_a)
        a.start()
        t0 = time.monotonic()
        for _ in range(5):
            runner.encode(image, Camera.frontal(), geometry=runner.needs_geometry("paste"))
        assert time.monotonic() - t0 < 3.0
        stall.set()
        a.join()
    finally:
        runner.close()
    with pytest.raises(RunnerTimeout):
        runner.encode(image, Camera.frontal())


def test_each_kind_has_its_own_worker(editor, monkeypatch):
    """A render is not queued behind another frame's encode (each kind's worker runs at the same
    time, as the stages of a stream's own engine do): with the encode held up, a render returns."""
    import live3dpe.pipeline.batching as batching

    runner = BatchingRunner(editor, max_batch=4, max_wait_ms=1, timeout_s=10)
    inline = ModelRunner(editor)
    image, geometry = crops(editor, 1)[0], runner.needs_geometry("paste")
    planes = inline.fuse(inline.encode(image, Camera.frontal(), geometry=geometry), None)
    release, encoding = threading.Event(), threading.Event()
    encode = batching.BATCHED["encode"]

    def held_encode(ed, items):
        encoding.set()
        release.wait(10)
        return encode(ed, items)

    monkeypatch.setitem(batching.BATCHED, "encode", held_encode)
    try:
        waiting = threading.Thread(target=runner.encode, args=(image, Camera.frontal(), geometry))
        waiting.start()
        assert encoding.wait(5)
        face = runner.render(planes, Camera.frontal())  # would wait out the encode with one worker
        assert not release.is_set() and np.array_equal(face, inline.render(planes, Camera.frontal()))
        release.set()
        waiting.join(10)
    finally:
        release.set()
        runner.close()

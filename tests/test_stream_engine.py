"""Engine behaviour: ordering, bounded queues, flat latency, faults, control."""
from __future__ import annotations

import logging
import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from live3dpe.stream.control import Control, ViewSpec
from live3dpe.stream.engine import Engine, Stage, StopStream
from live3dpe.stream.frame import EndOfStream, Frame
from live3dpe.stream.queues import BlockingQueue, LatestQueue, QueueClosed
from live3dpe.stream.sinks import NullSink

pytestmark = pytest.mark.timeout(60)


class CountingSource:
    """Frames whose first pixel encodes their index; optionally paced, failing or ending early."""

    def __init__(self, n: int | None = 20, fps: float | None = None, fail_at: set[int] = frozenset(), size=(48, 64)):
        self.n, self.fps, self.fail_at, self.size = n, fps, set(fail_at), size
        self.i = 0
        self.closed = False
        self._t0 = time.monotonic()

    def recv(self) -> Frame:
        if self.n is not None and self.i >= self.n:
            raise EndOfStream
        i = self.i
        self.i += 1
        if self.fps:
            time.sleep(max(0.0, self._t0 + i / self.fps - time.monotonic()))
        if i in self.fail_at:
            raise ValueError(f"corrupt frame {i}")
        img = np.zeros((*self.size, 3), np.uint8)
        img[0, 0] = (i % 256, i // 256, 0)
        return Frame(img, i, Fraction(1, 30))

    def close(self) -> None:
        self.closed = True


class ListSink:
    def __init__(self, fail_at: int | None = None):
        self.frames: list[Frame] = []
        self.fail_at = fail_at
        self.closed_with: bool | None = None

    def send(self, frame: Frame) -> None:
        if self.fail_at is not None and len(self.frames) == self.fail_at:
            raise OSError("disk full")
        self.frames.append(frame)

    def close(self, abort: bool = False) -> None:
        self.closed_with = abort


def index_of(frame: Frame) -> int:
    return int(frame.image[0, 0, 0]) + 256 * int(frame.image[0, 0, 1])


def invert(work):
    work.output = 255 - work.frame.image


# queues ---------------------------------------------------------------------------
def test_latest_queue_drops_oldest_and_stays_bounded():
    q = LatestQueue(2)
    for i in range(5):
        q.put(i)
    assert len(q) == 2 and q.dropped == 3 and q.high_water == 2
    assert [q.get(), q.get()] == [3, 4]


def test_blocking_queue_waits_for_room_and_close_wakes_waiters():
    q = BlockingQueue(1)
    q.put(1)
    result = []

    def producer():
        try:
            q.put(2)
            result.append("put")
        except QueueClosed:
            result.append("closed")

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.05)
    assert result == []  # blocked: no room
    assert q.get() == 1
    t.join(5)
    assert result == ["put"] and q.get() == 2
    q.close()
    with pytest.raises(QueueClosed):
        q.get()


def test_closed_queue_still_delivers_queued_items():
    q = BlockingQueue(3)
    q.put("a")
    q.close()
    assert q.get() == "a"
    with pytest.raises(QueueClosed):
        q.get()


# engine ---------------------------------------------------------------------------
def test_offline_keeps_every_frame_in_order_through_stages():
    def slow_on_some(work):
        if index_of(work.frame) % 7 == 0:
            time.sleep(0.01)

    sink = ListSink()
    stats = Engine(CountingSource(40), sink, [Stage("a", slow_on_some), Stage("b", invert)], live=False).run()
    assert [f.pts for f in sink.frames] == list(range(40))
    assert all(int(f.image[5, 5, 0]) == 255 for f in sink.frames)  # processed, not passed through
    assert stats.frames_out == 40 and stats.dropped == 0
    assert sink.closed_with is False


def test_live_slow_model_drops_frames_and_latency_stays_flat():
    def slow_model(work):
        time.sleep(0.05)
        work.output = work.frame.image

    src = CountingSource(n=None, fps=100)
    eng = Engine(src, NullSink(), [Stage("pose", lambda w: None), Stage("model", slow_model)], live=True, max_frames=150)
    stats = eng.run()
    assert all(q.high_water <= q.maxsize for q in eng.queues)
    assert stats.dropped > 0 and stats.frames_out < stats.frames_in
    lat = stats.latencies_since(0)
    assert len(lat) >= 10
    # an unbounded queue would add ~40 ms per frame here (100 fps in, 20 fps out): >1 s by the end
    late = lat[len(lat) // 2 :]
    assert max(late) < 400, late
    assert np.median(late) < 2 * np.median(lat[: len(lat) // 2]) + 50


@pytest.mark.parametrize("on_demand", [True, False])
def test_on_demand_stages_do_no_work_on_frames_that_would_be_dropped(on_demand):
    calls = {"pose": 0, "model": 0}

    def pose(work):
        calls["pose"] += 1
        time.sleep(0.002)

    def model(work):
        calls["model"] += 1
        time.sleep(0.04)

    stages = [Stage("pose", pose), Stage("model", model)]
    Engine(CountingSource(n=None, fps=200), NullSink(), stages, live=True, max_frames=120, on_demand=on_demand).run()
    if on_demand:
        assert calls["pose"] <= calls["model"] + 2
    else:
        assert calls["pose"] > 2 * calls["model"]


def test_on_demand_stages_start_just_in_time_so_frames_do_not_wait_behind_the_bottleneck():
    """pose 10 ms -> model 60 ms: pose must start its frame ~10 ms before the model frees up,
    not as soon as the model took the previous one (that frame would then wait ~50 ms)."""
    stages = [Stage("pose", lambda w: time.sleep(0.01)), Stage("model", lambda w: time.sleep(0.06))]
    engine = Engine(CountingSource(n=None, fps=100), NullSink(), stages, live=True, max_frames=200, on_demand=True)
    t0 = time.monotonic()
    stats = engine.run()
    elapsed = time.monotonic() - t0
    lat = np.asarray(stats.latencies_since(5))
    assert lat.size > 20
    # waiting in a queue behind the model, the median would be ~10 + 50 + 60 = 120 ms
    assert np.median(lat) < 95, np.median(lat)
    # and the model stays busy: throughput close to 1 / 60 ms
    assert stats.frames_out / elapsed > 0.8 / 0.06, stats.frames_out / elapsed


def test_live_pts_travel_with_frames_and_increase():
    sink = ListSink()
    Engine(CountingSource(60, fps=200), sink, [Stage("slow", lambda w: time.sleep(0.01))], live=True).run()
    pts = [f.pts for f in sink.frames]
    assert pts == sorted(set(pts)) and pts[-1] <= 59
    assert all(index_of(f) == f.pts for f in sink.frames)


def test_stage_failure_on_one_frame_passes_it_through_and_logs_once(caplog):
    def flaky(work):
        if index_of(work.frame) in (3, 8):
            raise RuntimeError("model blew up")
        invert(work)

    sink = ListSink()
    with caplog.at_level(logging.WARNING, logger="live3dpe.stream.engine"):
        stats = Engine(CountingSource(12), sink, [Stage("model", flaky), Stage("after", lambda w: None)], live=False).run()
    assert len(sink.frames) == 12
    passed = [index_of(f) for f in sink.frames if f.image[5, 5, 0] == 0]
    assert passed == [3, 8]
    assert stats.faults["model"] == 2
    assert sum("model failed" in r.message for r in caplog.records) == 1


def test_corrupt_source_frame_is_skipped_and_stream_continues():
    sink = ListSink()
    stats = Engine(CountingSource(10, fail_at={4}), sink, [Stage("inv", invert)], live=False).run()
    assert [f.pts for f in sink.frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert stats.faults["capture"] == 1


def test_source_that_keeps_failing_ends_the_stream():
    sink = ListSink()
    Engine(CountingSource(100, fail_at=set(range(3, 100))), sink, live=False, max_source_errors=5).run()
    assert len(sink.frames) == 3


def test_sink_failure_stops_everything_and_aborts_the_sink():
    src = CountingSource(n=None)
    sink = ListSink(fail_at=5)
    eng = Engine(src, sink, [Stage("inv", invert)], live=False)
    with pytest.raises(OSError, match="disk full"):
        eng.run()
    assert sink.closed_with is True and src.closed
    assert not eng.running


def test_stop_stream_from_sink_ends_cleanly():
    class QuitAfter(ListSink):
        def send(self, frame):
            if len(self.frames) == 4:
                raise StopStream
            super().send(frame)

    sink = QuitAfter()
    Engine(CountingSource(n=None), sink, live=True).run()
    assert len(sink.frames) == 4 and sink.closed_with is False


def test_passthrough_skips_stages_and_control_changes_apply_while_running():
    control = Control(passthrough=True)
    calls = []

    def stage(work):
        calls.append(work.control.version)
        invert(work)

    class Toggling(ListSink):
        def send(self, frame):
            super().send(frame)
            if len(self.frames) == 5:
                control.update(passthrough=False)

    sink = Toggling()
    Engine(CountingSource(30), sink, [Stage("s", stage)], live=False, control=control, queue_size=1).run()
    assert len(sink.frames) == 30
    assert sink.frames[0].image[5, 5, 0] == 0 and sink.frames[-1].image[5, 5, 0] == 255
    assert calls and min(calls) == 2


def test_stop_does_not_hang_with_blocking_source():
    src = CountingSource(n=None, fps=50)
    eng = Engine(src, NullSink(), [Stage("s", lambda w: time.sleep(0.02))], live=True).start()
    time.sleep(0.2)
    eng.stop()
    assert eng.join(timeout=5)


# control --------------------------------------------------------------------------
def test_control_versions_and_prompt_version():
    c = Control(prompt_text="golden statue")
    v0 = c.get()
    c.update(mode="view")
    assert c.get().version == v0.version + 1 and c.get().prompt_version == v0.prompt_version
    c.update(prompt_text="golden statue")  # unchanged prompt
    assert c.get().prompt_version == v0.prompt_version
    c.update(prompt_text="zombie")
    assert c.get().prompt_version == v0.prompt_version + 1
    with pytest.raises(ValueError, match="mode"):
        c.update(mode="sideways")
    with pytest.raises(ValueError, match="unknown control"):
        c.update(colour="red")


def test_control_is_consistent_under_concurrent_toggles():
    c = Control()
    threads = [threading.Thread(target=lambda: [c.toggle("mirror") for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.get().mirror is False and c.get().version == 2000


def test_view_spec_parsing():
    assert ViewSpec.parse("frontal").yaw_pitch(3.0) == (0.0, 0.0)
    v = ViewSpec.parse("yaw=20,pitch=-5")
    assert v.kind == "fixed" and np.allclose(np.degrees(v.yaw_pitch(0)), (20, -5))
    o = ViewSpec.parse("orbit")
    assert o.yaw_pitch(0.0) != o.yaw_pitch(1.0)
    for bad in ("sideways", "yaw=abc", "yaw=1,yaw=2", ""):
        with pytest.raises(ValueError, match="bad view"):
            ViewSpec.parse(bad)


def test_frame_rejects_bad_images():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Frame(np.zeros((4, 4), np.uint8), 0, Fraction(1, 30))
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Frame(np.zeros((4, 4, 3), np.float32), 0, Fraction(1, 30))

"""The streaming engine: one thread per stage, bounded queues in between.

    capture ─▶ stage 1 ─▶ … ─▶ stage n ─▶ sink

Live mode (`live=True`) connects threads with `LatestQueue`s: a slow stage drops stale
frames instead of delaying new ones, so latency stays flat. With `on_demand` (default) a
stage starts its next frame only once the following stage has taken its previous result,
so no CPU goes into frames that would be dropped later: drops then happen at the capture
queue, and the bottleneck stage keeps the cores it needs. It also starts just in time: from
the stages' running mean durations it waits until its result would be taken the moment it
is ready, so it works on the newest frame instead of one that then waits in a queue
behind the bottleneck (lower latency, same throughput). Offline mode connects the
threads with `BlockingQueue`s: every input frame becomes exactly one output frame, in order.

That is the `balanced` schedule: every stage busy on its own frame, the most frames per second.
On a machine with fewer cores than stages those frames share the cores, so each one takes
longer than it would alone (2 cores, 640x480: 58 ms of stage time per frame, against 28 ms for
the same stages one frame at a time). `latency="low"` trades some of that throughput for
latency, for calls: the first stage admits a frame only while fewer than a limit are on their
way, and only when, by the stages' mean durations, it can flow through every stage without
waiting behind the frames ahead of it; the stages after it take frames as they come. A frame's
latency is then about the sum of the stage times of a frame running alone. The limit
(`InFlightTuner`, at most `in_flight`, default one per core) is tuned while streaming to the
most frames per second per second of latency, or to one more when that buys at least 20 % more
frames per second for at most a frame period more latency: a second frame on its way pays only
while a core is free for it, which a video call sharing the machine changes (measured on 2 cores
busy with other work: letting frames overlap by a quarter to a whole frame time bought 2 to 18 %
more FPS for 30 to 65 % more latency; on 2 idle cores 31 -> 41 FPS for 30 -> 43 ms).
Live, the first stage takes the newest captured frame, or waits for the next one when it is
due sooner than the newest is old.

A stage that raises on a frame does not stop the stream: the remaining stages are
skipped for that frame (except `always` ones, such as the compositor that keeps the output
size and mirroring the same for every frame) and the original image is passed through; each
(stage, error type) is logged once. Passthrough in the `Control` skips all but `always` stages.

The engine is transport: it knows frames, settings and outputs, not faces or models. What
the stages find out lives in a `Work` subclass the caller supplies (`make_work`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .control import Control, ControlState
from .frame import EndOfStream, Frame
from .queues import BlockingQueue, LatestQueue, QueueClosed, StageQueue
from .stats import Stats

log = logging.getLogger(__name__)

LATENCIES = ("low", "balanced")


class Source(Protocol):
    def recv(self) -> Frame: ...  # raises EndOfStream when done

    def close(self) -> None: ...


class Sink(Protocol):
    def send(self, frame: Frame) -> None: ...

    def close(self, abort: bool = False) -> None: ...  # abort: discard partial output


class StopStream(Exception):
    """Raised by a sink (e.g. `q` in the preview window) to end the stream cleanly."""


@dataclass
class Work:
    """One frame on its way through the stages. Subclasses add what their stages find out
    (`live3dpe.pipeline.FaceWork`); the engine reads only these fields and the two properties."""

    frame: Frame
    control: ControlState
    output: np.ndarray | None = None  # the frame to send; None: send `frame.image`
    failed: str | None = None  # name of the stage that raised on this frame

    @property
    def has_face(self) -> bool:
        return False

    @property
    def edited(self) -> bool:
        """Whether the stages changed this frame (counted in `Stats.frames_edited`)."""
        return False


@dataclass(frozen=True)
class Stage:
    """A named step run in its own thread. `fn` fills in fields of the Work it is given.

    `always`: run it on passed-through and failed frames too (a compositor that must keep
    every output frame the same size)."""

    name: str
    fn: Callable[[Work], None]
    always: bool = False

    def runs_on(self, work: Work) -> bool:
        """Whether this stage works on `work`: every stage unless the frame is passed through or
        an earlier stage failed on it; `always` stages regardless."""
        return self.always or not (work.control.passthrough or work.failed)


class InFlightTuner:
    """How many frames the low-latency schedule lets on their way: the limit with the most
    frames per second per second of latency (Kleinrock's power), so one frame more on its way
    must buy more throughput than it costs latency, as it does while a core is free for it;
    except that one more is also taken when it buys at least `MORE_FPS` times the frames per
    second for at most one frame period more latency (a low frame rate shows as judder, one
    period of delay hardly; measured on 2 idle cores: 31 -> 41 FPS for 30 -> 43 ms).
    Each limit is measured over windows of at least `window_s` and 8 frames; every
    `explore_every` windows a neighbouring limit is measured again, because the cores free
    for this process change (a video call shares them)."""

    MORE_FPS = 1.2

    def __init__(self, most: int, window_s: float = 0.5, explore_every: int = 10) -> None:
        self.most, self.window_s, self.explore_every = most, window_s, explore_every
        self.limit = most
        self.measured: dict[int, tuple[float, float]] = {}  # limit -> (frames per second, mean latency s)
        self._settle = most  # frames admitted under the previous limit, still leaving
        self._start = self._latency = 0.0
        self._count = self._windows = 0

    def best(self) -> int:
        m = self.measured
        k = max(m, key=lambda k: (m[k][0] / m[k][1], -k))
        while k + 1 in m and m[k + 1][0] >= self.MORE_FPS * m[k][0] and m[k + 1][1] <= m[k][1] + 1 / m[k][0]:
            k += 1
        return k

    def sent(self, now: float, latency_s: float) -> None:
        """A frame has left the pipeline at `now` (seconds), `latency_s` after it was captured."""
        if self._settle:
            self._settle -= 1
            self._start, self._count, self._latency = now, 0, 0.0
            return
        self._count += 1
        self._latency += latency_s
        if now - self._start < self.window_s or self._count < 8:
            return
        rate, latency = self._count / (now - self._start), self._latency / self._count
        old = self.measured.get(self.limit)
        self.measured[self.limit] = (rate, latency) if old is None else ((old[0] + rate) / 2, (old[1] + latency) / 2)
        self._windows += 1
        best = self.best()
        near = [k for k in (best - 1, best + 1) if 1 <= k <= self.most]
        fresh = [k for k in near if k not in self.measured]
        if fresh:
            nxt = fresh[0]
        elif near and self._windows % self.explore_every == 0:
            nxt = near[(self._windows // self.explore_every) % len(near)]
        else:
            nxt = best
        self._settle = self.limit if nxt != self.limit else 0
        self.limit = nxt
        self._start, self._count, self._latency = now, 0, 0.0


class Engine:
    """Runs source → stages → sink concurrently. `run()` blocks; `start()`/`stop()`/`join()` don't."""

    def __init__(
        self,
        source: Source,
        sink: Sink,
        stages: Sequence[Stage] = (),
        *,
        live: bool = True,
        control: Control | None = None,
        stats: Stats | None = None,
        max_frames: int | None = None,
        queue_size: int | None = None,
        max_source_errors: int = 30,
        on_output: Callable[[Work], None] | None = None,
        on_demand: bool = True,
        make_work: Callable[[Frame, ControlState], Work] = Work,
        latency: str = "balanced",
        in_flight: int | None = None,
    ) -> None:
        """`latency`: `balanced` (every stage busy, `on_demand` applies) or `low` (frames
        admitted so that none waits, at most `in_flight` of them past the first stage's input,
        default one per CPU core; `tuner` picks how many). See the module docstring."""
        if latency not in LATENCIES:
            raise ValueError(f"latency must be one of {', '.join(LATENCIES)}, got {latency!r}")
        if in_flight is not None and in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self.source, self.sink, self.stages = source, sink, list(stages)
        self.live = live
        self.latency = latency
        self.in_flight = in_flight or max(1, os.cpu_count() or 1)
        self.control = control or Control()
        self.stats = stats or Stats()
        self.max_frames = max_frames
        self.max_source_errors = max_source_errors
        self.on_output = on_output  # observer: sees each Work just before its frame is sent
        self.on_demand = on_demand
        self.make_work = make_work
        size = queue_size or (1 if live else 4)
        make = LatestQueue if live else BlockingQueue
        self.queues: list[StageQueue[Work]] = [make(size) for _ in range(len(self.stages) + 1)]
        if latency == "low":  # admitted frames are never dropped: they are at most `in_flight`
            self.queues[1:] = [BlockingQueue(self.in_flight) for _ in self.stages]
        # just-in-time starts: each stage's mean duration and when its current frame should be done
        self._mean_s = [0.0] * len(self.stages)
        self._busy_until = [0.0] * len(self.stages)
        # low latency: frames admitted and sent, under `_flow`, which is notified as frames move on
        self._flow = threading.Condition()
        self._admitted = self._sent = 0
        self.tuner = InFlightTuner(self.in_flight)
        self._period_s = 0.0  # the source's mean frame interval (live): when the next frame is due
        self._skipped = 0  # stale frames passed over for a newer one
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._logged: set[tuple[str, str]] = set()
        self.error: BaseException | None = None
        self._finished = threading.Event()

    # lifecycle -----------------------------------------------------------------------
    def start(self) -> Engine:
        if self._threads:
            raise RuntimeError("engine already started")
        workers = [("capture", self._capture_loop, ())]
        workers += [(s.name, self._stage_loop, (i, s, self.queues[i], self.queues[i + 1])) for i, s in enumerate(self.stages)]
        workers += [("sink", self._sink_loop, (self.queues[-1],))]
        for name, target, args in workers:
            t = threading.Thread(target=target, args=args, name=f"live3dpe-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> None:
        """Ask every thread to finish now; queued frames are discarded."""
        self._stop.set()
        for q in self.queues:
            q.close(discard=True)
        with self._flow:
            self._flow.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads; True when all have finished. Re-raises a sink failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not any(t.is_alive() for t in self._threads)
        if done:
            self.stats.set_dropped(sum(q.dropped for q in self.queues) + self._skipped)
        return done

    def run(self) -> Stats:
        """Stream until the source ends, `max_frames` is reached, or a sink stops it.

        The sink is closed at the end: committed on success, aborted (partial output
        discarded) when the sink failed. Ctrl+C is how a live stream normally ends, so there
        it commits what was streamed; an interrupted offline run is aborted and re-raised."""
        self.start()
        try:
            while not self.join(timeout=0.2):
                pass
        except KeyboardInterrupt:
            self.stop()
            self.join(timeout=5)
            self._close(abort=not self.live or self.error is not None)
            if not self.live:
                raise
            return self.stats
        except BaseException:
            self.stop()
            self.join(timeout=5)
            self._close(abort=True)
            raise
        self._close(abort=self.error is not None)
        if self.error is not None:
            raise self.error
        return self.stats

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _close(self, abort: bool) -> None:
        try:
            self.source.close()
        finally:
            self.sink.close(abort=abort)

    # threads -------------------------------------------------------------------------
    def _log_once(self, stage: str, err: BaseException) -> None:
        self.stats.record_fault(stage, err)
        key = (stage, type(err).__name__)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s failed (%s: %s); passing frames through, streaming continues", stage, type(err).__name__, err)
            log.debug("first %s failure", stage, exc_info=err)

    def _capture_loop(self) -> None:
        out = self.queues[0]
        n, errors, last_ns = 0, 0, 0
        try:
            while not self._stop.is_set() and (self.max_frames is None or n < self.max_frames):
                try:
                    frame = self.source.recv()
                except EndOfStream:
                    break
                except Exception as err:  # a corrupt frame: skip it, keep going
                    errors += 1
                    self._log_once("capture", err)
                    if errors >= self.max_source_errors:
                        log.error("source failed %d times in a row; ending the stream", errors)
                        break
                    continue
                errors = 0
                n += 1
                if self.live and n > 1:
                    interval = (frame.captured_ns - last_ns) / 1e9
                    self._period_s += 0.1 * (interval - self._period_s) if self._period_s else interval
                last_ns = frame.captured_ns
                self.stats.record_input()
                out.put(self.make_work(frame, self.control.get()))
        except QueueClosed:
            pass
        finally:
            out.close()

    def _next_start(self, index: int) -> float:
        """When stage `index` will take its next input (perf_counter seconds): once its current
        frame is done, and no earlier than it would have to wait for the stages after it."""
        start = 0.0  # the sink takes frames at once
        for i in range(len(self.stages) - 1, index - 1, -1):
            start = max(self._busy_until[i], start - self._mean_s[i])
        return start

    def _wait_for_downstream(self, index: int) -> None:
        """On-demand start: the next stage has taken the previous result, and this stage's
        result would be ready (by its mean duration) just as the next stage wants it."""
        if self.live and self.on_demand:
            self.queues[index + 1].wait_empty()
            while not self._stop.is_set():
                delay = self._next_start(index + 1) - self._mean_s[index] - time.perf_counter()
                if delay <= 0.001:
                    break
                self._stop.wait(min(delay, 0.05))  # re-plan: the stages after us may finish early

    def _admission_time(self) -> float:
        """When a new frame can enter the first stage and flow through every stage without
        waiting (perf_counter seconds): the frames on their way, oldest first, are played
        through the stages by their mean durations, then the new one is fitted in behind them."""
        now, mean = time.perf_counter(), self._mean_s
        free = [now] * len(self.stages)  # when each stage has finished the frames ahead

        def play(first: int, ready: float) -> None:
            for j in range(first, len(self.stages)):
                ready = free[j] = max(ready, free[j]) + mean[j]

        for i in range(len(self.stages) - 1, -1, -1):
            for _ in range(len(self.queues[i + 1])):  # done here, waiting for stage i + 1
                play(i + 1, now)
            if self._busy_until[i]:
                free[i] = max(self._busy_until[i], now)
                play(i + 1, free[i])
        start, ahead = now, 0.0
        for i in range(len(self.stages)):
            start = max(start, free[i] - ahead)
            ahead += mean[i]
        return start

    def _admit(self) -> None:
        """Low latency: wait until fewer frames than the tuner's limit are on their way and a
        new one would not wait at any stage; re-planned whenever a stage finishes a frame."""
        with self._flow:
            while not self._stop.is_set():
                delay = 0.05
                if self._admitted - self._sent < self.tuner.limit:
                    delay = self._admission_time() - time.perf_counter()
                    if delay <= 0.0005:
                        return
                self._flow.wait(min(delay, 0.05))

    def _take_fresh(self, inq: StageQueue[Work]) -> Work:
        """The newest captured frame, or (live) the next one when it is due sooner than the
        newest is old: a frame's age counts in its latency as much as its processing does."""
        work = inq.get()
        period = self._period_s
        if self.live and period > 0 and (time.monotonic_ns() - work.frame.captured_ns) / 1e9 > period / 2:
            try:
                newer = inq.get(timeout=period)
            except (TimeoutError, QueueClosed):
                return work
            self._skipped += 1
            return newer
        return work

    def _moved(self) -> None:
        """A frame left a stage: the low-latency admission re-plans."""
        if self.latency == "low":
            with self._flow:
                self._flow.notify_all()

    def _stage_loop(self, index: int, stage: Stage, inq: StageQueue[Work], outq: StageQueue[Work]) -> None:
        low = self.latency == "low"
        try:
            while True:
                if low and index == 0:
                    self._admit()
                    work = self._take_fresh(inq)
                    with self._flow:
                        self._admitted += 1
                else:
                    if not low:
                        self._wait_for_downstream(index)
                    work = inq.get()
                if stage.runs_on(work):
                    t0 = time.perf_counter()
                    self._busy_until[index] = t0 + self._mean_s[index]
                    try:
                        stage.fn(work)
                    except Exception as err:
                        work.failed = work.failed or stage.name
                        work.output = None
                        self._log_once(stage.name, err)
                    elapsed = time.perf_counter() - t0
                    self._mean_s[index] += 0.2 * (elapsed - self._mean_s[index])
                    self.stats.record_stage(stage.name, elapsed)
                outq.put(work)
                self._busy_until[index] = 0.0  # after the put: the frame is always in sight of `_admission_time`
                self._moved()
        except QueueClosed:
            pass
        finally:
            outq.close()
            inq.close(discard=True)  # unblock an upstream producer if we stopped early

    def _sink_loop(self, inq: StageQueue[Work]) -> None:
        try:
            while True:
                work = inq.get()
                image = work.frame.image if work.output is None else work.output
                if self.on_output is not None:
                    self.on_output(work)
                t0 = time.perf_counter()
                self.sink.send(work.frame.with_image(np.ascontiguousarray(image)))
                self.stats.record_stage("sink", time.perf_counter() - t0)
                self.stats.record_output(work.frame.captured_ns, face=work.has_face, edited=work.edited)
                with self._flow:
                    self._sent += 1
                    if self.latency == "low":
                        self.tuner.sent(time.perf_counter(), (time.monotonic_ns() - work.frame.captured_ns) / 1e9)
                    self._flow.notify_all()
        except QueueClosed:
            pass
        except StopStream:
            log.info("stream stopped by the sink")
        except BaseException as err:
            self.error = err
            log.error("sink failed: %s: %s; stopping", type(err).__name__, err)
        finally:
            self._stop.set()
            for q in self.queues:
                q.close(discard=True)

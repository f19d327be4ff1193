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

A stage that raises on a frame does not stop the stream: the remaining stages are
skipped for that frame (except `always` ones, such as the compositor that keeps the output
size and mirroring the same for every frame) and the original image is passed through; each
(stage, error type) is logged once. Passthrough in the `Control` skips all but `always` stages.

The engine is transport: it knows frames, settings and outputs, not faces or models. What
the stages find out lives in a `Work` subclass the caller supplies (`make_work`).
"""
from __future__ import annotations

import logging
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
    ) -> None:
        self.source, self.sink, self.stages = source, sink, list(stages)
        self.live = live
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
        # just-in-time starts: each stage's mean duration and when its current frame should be done
        self._mean_s = [0.0] * len(self.stages)
        self._busy_until = [0.0] * len(self.stages)
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

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads; True when all have finished. Re-raises a sink failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done = not any(t.is_alive() for t in self._threads)
        if done:
            self.stats.set_dropped(sum(q.dropped for q in self.queues))
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
        n, errors = 0, 0
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

    def _stage_loop(self, index: int, stage: Stage, inq: StageQueue[Work], outq: StageQueue[Work]) -> None:
        try:
            while True:
                self._wait_for_downstream(index)
                work = inq.get()
                if stage.always or not (work.control.passthrough or work.failed):
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
                    self._busy_until[index] = 0.0
                    self.stats.record_stage(stage.name, elapsed)
                outq.put(work)
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

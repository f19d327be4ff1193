"""One place where the engine records how fast each stage runs and how late frames arrive.

The overlay, the WebRTC data channel and the benchmarks all read the same `Stats`.
"""
from __future__ import annotations

import collections
import threading
import time

import numpy as np


class Stats:
    """Thread-safe rolling per-stage timings, capture-to-sink latency, output rate and drops."""

    def __init__(self, window: int = 120, history: int = 8192) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._stages: dict[str, collections.deque[float]] = {}
        self._latency: collections.deque[float] = collections.deque(maxlen=window)
        self._out_times: collections.deque[float] = collections.deque(maxlen=window)
        # the last `history` frames' latencies (bounded: a live stream runs for hours), for
        # benchmarks and tests; `latency_count` numbers them so a reader can ask for "since n"
        self._history: collections.deque[float] = collections.deque(maxlen=history)
        self.latency_count = 0
        self.frames_in = 0
        self.frames_out = 0
        self.frames_with_face = 0  # output frames in which a face was found
        self.frames_edited = 0  # output frames the stages produced (not passed through)
        self.dropped = 0
        self.faults: collections.Counter[str] = collections.Counter()
        self.first_fault: dict[str, str] = {}  # stage -> "ErrorType: message" of its first failure
        self.started = time.monotonic()

    def record_stage(self, name: str, seconds: float) -> None:
        with self._lock:
            self._stages.setdefault(name, collections.deque(maxlen=self.window)).append(seconds * 1e3)

    def record_input(self) -> None:
        with self._lock:
            self.frames_in += 1

    def record_output(self, captured_ns: int, *, face: bool = False, edited: bool = False) -> None:
        now = time.monotonic_ns()
        ms = (now - captured_ns) / 1e6
        with self._lock:
            self.frames_out += 1
            self.frames_with_face += face
            self.frames_edited += edited
            self._latency.append(ms)
            self._history.append(ms)
            self.latency_count += 1
            self._out_times.append(now / 1e9)

    def latencies_since(self, count: int = 0) -> list[float]:
        """Latencies (ms) of the frames output after the first `count` (as many as are kept)."""
        with self._lock:
            return list(self._history)[max(0, len(self._history) - (self.latency_count - count)) :]

    def record_fault(self, stage: str, err: BaseException | None = None) -> None:
        with self._lock:
            self.faults[stage] += 1
            if err is not None:
                self.first_fault.setdefault(stage, f"{type(err).__name__}: {err}")

    def set_dropped(self, n: int) -> None:
        with self._lock:
            self.dropped = n

    @property
    def fps(self) -> float:
        """Output frames per second over the recent window."""
        with self._lock:
            t = list(self._out_times)
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    def snapshot(self) -> dict:
        """Plain-data summary (JSON-serialisable): medians over the recent window."""
        fps = self.fps
        with self._lock:
            stages = {k: float(np.median(v)) for k, v in self._stages.items() if v}
            lat = np.asarray(self._latency) if self._latency else None
            return {
                "fps": fps,
                "stage_ms": stages,
                "latency_ms_p50": float(np.percentile(lat, 50)) if lat is not None else None,
                "latency_ms_p95": float(np.percentile(lat, 95)) if lat is not None else None,
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "frames_with_face": self.frames_with_face,
                "frames_edited": self.frames_edited,
                "dropped": self.dropped,
                "faults": dict(self.faults),
            }

    def overlay_lines(self) -> list[str]:
        """Short text lines for the on-frame overlay."""
        s = self.snapshot()
        lines = [f"{s['fps']:.1f} fps"]
        if s["latency_ms_p50"] is not None:
            lines[0] += f"  latency {s['latency_ms_p50']:.0f} ms"
        lines += [f"{k} {v:.1f} ms" for k, v in s["stage_ms"].items()]
        return lines

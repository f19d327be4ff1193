"""Track state of the followed face: acquiring -> tracking -> lost (grace) -> acquiring."""
from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Protocol

from live3dpe.pose.estimator import FaceObservation


class TrackState(str, Enum):
    ACQUIRING = "acquiring"  # no face yet, or the last one is gone for good: pass-through
    TRACKING = "tracking"  # a face this frame
    LOST = "lost"  # no face, but within the grace period: hold the last good pose


class Resettable(Protocol):
    def reset(self) -> None: ...


class FaceTrack:
    """Decides what the editor sees each frame.

    `update(obs, t)` returns `obs` while tracking, the last good observation for `grace_s`
    seconds after the face disappears (a blink of the detector must not flash the raw face),
    then None (the stream passes the frame through). Whenever a face is (re-)acquired after
    the grace period, the `resets` (ObservationFilter, TriplaneSmoother, ...) are reset so no
    state from the previous face leaks into the new one; `reacquired` is True on that frame.
    """

    def __init__(self, grace_s: float = 0.5, resets: Sequence[Resettable] = ()) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, got {grace_s}")
        self.grace_s = grace_s
        self.resets = list(resets)
        self.state = TrackState.ACQUIRING
        self.reacquired = False
        self._last: FaceObservation | None = None
        self._lost_at = 0.0

    def update(self, obs: FaceObservation | None, t: float) -> FaceObservation | None:
        self.reacquired = False
        if obs is not None:
            if self.state is TrackState.ACQUIRING:
                self._reset_all()
                self.reacquired = True
            self.state = TrackState.TRACKING
            self._last = obs
            return obs
        if self.state is TrackState.TRACKING:
            self.state = TrackState.LOST
            self._lost_at = t
        if self.state is TrackState.LOST and t - self._lost_at <= self.grace_s:
            return self._last
        self.state = TrackState.ACQUIRING
        self._last = None
        return None

    def reset(self) -> None:
        self.state = TrackState.ACQUIRING
        self._last = None
        self._reset_all()

    def _reset_all(self) -> None:
        for r in self.resets:
            r.reset()

"""One-Euro filter (Casiez et al., CHI 2012): an adaptive low-pass for noisy live signals.

Its cutoff rises with the signal's speed, so slow jitter is smoothed hard while fast motion
passes with little lag. Works on scalars or arrays of any fixed shape (element-wise).
"""
from __future__ import annotations

import math

import numpy as np


def smoothing_factor(cutoff_hz: float | np.ndarray, dt: float) -> float | np.ndarray:
    """EMA weight of the new sample for a first-order low-pass at `cutoff_hz` and step `dt` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """x_hat = EMA(x) with cutoff min_cutoff + beta * |filtered derivative| (Hz, units of x/s).

    `__call__(x, t)` with t in seconds (monotonic); a repeated or earlier timestamp returns the
    last estimate unchanged. `derivative` is the filtered speed, useful as a motion measure.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"need min_cutoff > 0, d_cutoff > 0, beta >= 0; got {min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @property
    def value(self) -> np.ndarray | None:
        return self._x

    @property
    def derivative(self) -> np.ndarray | None:
        return self._dx

    def __call__(self, x: np.ndarray | float, t: float) -> np.ndarray | float:
        scalar = np.isscalar(x)
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
        elif x.shape != self._x.shape:
            raise ValueError(f"OneEuroFilter got shape {x.shape} after {self._x.shape}; reset() first")
        elif t > self._t:
            dt = float(t) - self._t
            dx = (x - self._x) / dt
            self._dx = self._dx + smoothing_factor(self.d_cutoff, dt) * (dx - self._dx)
            cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
            self._x = self._x + smoothing_factor(cutoff, dt) * (x - self._x)
            self._t = float(t)
        return float(self._x) if scalar else self._x.copy()

"""Settings that may change while streaming, shared by UI threads and the engine.

Readers take an immutable `ControlState` snapshot per frame, so a frame is processed with
one consistent set of settings. `prompt_version` moves only when the prompt changes, so
the model re-encodes the prompt only then.
"""
from __future__ import annotations

import dataclasses
import math
import re
import threading
from dataclasses import dataclass

import numpy as np

MODES = ("paste", "view", "side-by-side")
MAX_PROMPT_CHARS = 300  # a sentence; what the web pages allow and every front end enforces


def clean_prompt(value: object) -> str | None:
    """A text prompt stripped and within `MAX_PROMPT_CHARS`; None and blank mean "no edit"."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"prompt must be a string or null, got {type(value).__name__}")
    text = value.strip()
    if len(text) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is too long ({len(text)} characters, limit {MAX_PROMPT_CHARS})")
    return text or None


@dataclass(frozen=True)
class ViewSpec:
    """Where the virtual camera for `view` mode sits: `frontal`, a fixed yaw/pitch (degrees) or an `orbit`."""

    kind: str = "frontal"  # frontal | fixed | orbit
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    orbit_period_s: float = 6.0
    orbit_yaw_deg: float = 30.0
    orbit_pitch_deg: float = 10.0

    @classmethod
    def parse(cls, text: str) -> ViewSpec:
        """`frontal`, `orbit`, or `yaw=20,pitch=-5` (degrees; either key may be left out)."""
        t = text.strip().lower()
        if t in ("frontal", "front"):
            return cls("frontal")
        if t == "orbit":
            return cls("orbit")
        values = {}
        for part in filter(None, t.split(",")):
            m = re.fullmatch(r"\s*(yaw|pitch)\s*=\s*([-+]?\d+(?:\.\d*)?)\s*", part)
            if not m or m.group(1) in values:
                raise ValueError(f"bad view {text!r}: use 'frontal', 'orbit' or 'yaw=DEG,pitch=DEG'")
            values[m.group(1)] = float(m.group(2))
        if not values:
            raise ValueError(f"bad view {text!r}: use 'frontal', 'orbit' or 'yaw=DEG,pitch=DEG'")
        return cls("fixed", yaw_deg=values.get("yaw", 0.0), pitch_deg=values.get("pitch", 0.0))

    def yaw_pitch(self, t: float) -> tuple[float, float]:
        """Camera yaw/pitch in radians at stream time `t` seconds."""
        if self.kind == "orbit":
            phase = 2 * math.pi * t / self.orbit_period_s
            return math.radians(self.orbit_yaw_deg) * math.sin(phase), math.radians(self.orbit_pitch_deg) * math.cos(phase)
        if self.kind == "fixed":
            return math.radians(self.yaw_deg), math.radians(self.pitch_deg)
        return 0.0, 0.0

    def __str__(self) -> str:
        return f"yaw={self.yaw_deg:g},pitch={self.pitch_deg:g}" if self.kind == "fixed" else self.kind


# The preview window's hotkeys as (key, what it does): its help panel (`h`), `live --help`
# and the README all show this one list.
HOTKEYS: tuple[tuple[str, str], ...] = (
    ("h", "show / hide this help"),
    ("q, Esc", "quit"),
    ("n", "next prompt of --prompts"),
    ("v", "next viewpoint (switches to view mode)"),
    ("m", "mirror on / off"),
    ("s", "temporal smoothing on / off"),
    ("p", "pass-through (unedited) on / off"),
    ("o", "FPS and timings overlay on / off"),
)

# what the `v` hotkey cycles through
VIEW_CYCLE = (ViewSpec("frontal"), ViewSpec("fixed", yaw_deg=-25), ViewSpec("fixed", yaw_deg=25), ViewSpec("orbit"))


@dataclass(frozen=True)
class ControlState:
    """One consistent snapshot of the live settings."""

    prompt_text: str | None = None
    prompt_image: np.ndarray | None = None  # reference image, HxWx3 uint8 RGB
    view: ViewSpec = ViewSpec()
    mode: str = "paste"
    smoothing: bool = True
    passthrough: bool = False
    mirror: bool = False
    overlay: bool = False
    prompts: tuple[str, ...] = ()  # what the `n` hotkey cycles through
    version: int = 0
    prompt_version: int = 0

    @property
    def has_prompt(self) -> bool:
        """Whether frames are edited (a text or image prompt) rather than only reconstructed."""
        return self.prompt_text is not None or self.prompt_image is not None


class Control:
    """Thread-safe, versioned holder of the live settings."""

    def __init__(self, **initial) -> None:
        self._lock = threading.Lock()
        self._state = ControlState()
        if initial:
            self.update(**initial)

    def get(self) -> ControlState:
        with self._lock:
            return self._state

    @property
    def version(self) -> int:
        return self.get().version

    def update(self, **changes) -> ControlState:
        """Change some settings; bumps `version` (and `prompt_version` when the prompt changes)."""
        changes = self._validate(changes)
        with self._lock:
            return self._apply(changes)

    def toggle(self, name: str) -> ControlState:
        """Flip a boolean setting atomically (hotkeys)."""
        with self._lock:
            value = getattr(self._state, name, None)
            if not isinstance(value, bool):
                raise ValueError(f"{name!r} is not an on/off setting")
            return self._apply({name: not value})

    def cycle_view(self) -> ControlState:
        """Next entry of VIEW_CYCLE (hotkey `v`)."""
        with self._lock:
            return self._apply({"view": self._next_view()})

    def show_next_view(self) -> ControlState:
        """Hotkey `v`: the next viewpoint, switching to `view` mode when another mode is on,
        because paste and side-by-side render from the camera's own viewpoint and the change
        would not be seen."""
        with self._lock:
            return self._apply({"view": self._next_view(), "mode": "view"})

    def cycle_prompt(self) -> ControlState:
        """Hotkey `n`: the next text prompt of `prompts` (the first when the current one is not
        in the list). Clears `prompt_image`, since a prompt is either a text or an image."""
        with self._lock:
            prompts = self._state.prompts
            if not prompts:
                raise ValueError("no prompt list to cycle through")
            current = self._state.prompt_text
            idx = prompts.index(current) + 1 if current in prompts else 0
            return self._apply({"prompt_text": prompts[idx % len(prompts)], "prompt_image": None})

    def _next_view(self) -> ViewSpec:
        current = self._state.view
        idx = VIEW_CYCLE.index(current) + 1 if current in VIEW_CYCLE else 0
        return VIEW_CYCLE[idx % len(VIEW_CYCLE)]

    @staticmethod
    def _validate(changes: dict) -> dict:
        fields = {f.name for f in dataclasses.fields(ControlState)} - {"version", "prompt_version"}
        unknown = set(changes) - fields
        if unknown:
            raise ValueError(f"unknown control settings: {sorted(unknown)}")
        if "mode" in changes and changes["mode"] not in MODES:
            raise ValueError(f"unknown mode {changes['mode']!r}; choose one of {', '.join(MODES)}")
        if isinstance(changes.get("view"), str):
            changes = {**changes, "view": ViewSpec.parse(changes["view"])}
        if "prompts" in changes:
            prompts = tuple(changes["prompts"])
            if not all(isinstance(p, str) and p.strip() for p in prompts):
                raise ValueError("prompts must be non-empty strings")
            changes = {**changes, "prompts": prompts}
        img = changes.get("prompt_image")
        if img is not None and (not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3):
            raise ValueError("prompt_image must be an HxWx3 uint8 RGB array")
        return changes

    def _apply(self, changes: dict) -> ControlState:
        old = self._state
        prompt_changed = ("prompt_text" in changes and changes["prompt_text"] != old.prompt_text) or (
            "prompt_image" in changes and changes["prompt_image"] is not old.prompt_image
        )
        self._state = dataclasses.replace(
            old, **changes, version=old.version + 1, prompt_version=old.prompt_version + int(prompt_changed)
        )
        return self._state

"""The data-channel protocol between the browser page and `live3dpe serve`.

Messages are JSON objects with a `type`. The page sends

    {"type": "control", "prompt": "a smiling face", "view": "orbit", "smoothing": true, ...}

with any subset of the fields in `CONTROL_FIELDS`; the server applies them to the session's
`Control` in one update and answers `{"type": "state", ...}` with the resulting settings and
their `version`. The same message is sent when the channel opens, so the page starts from
the server's settings (a `serve --prompt` included) instead of its own defaults. Every
`STATS_PERIOD_S` it pushes `{"type": "stats", ...}` (FPS, latency, per-stage times)
including `applied_version`: the control version of the last frame that went out (null
before the first), so the page knows when the state it was sent has reached the video.
After a text prompt is applied, `{"type": "prompt_match", ...}` names its nearest known
style and whether the model knows it (`known`: false means a weak or arbitrary edit). Bad
messages get `{"type": "error", "message": ...}` and change nothing.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import cv2
import numpy as np

from live3dpe.stream.control import MODES, ControlState, ViewSpec, clean_prompt

STATS_PERIOD_S = 0.5
MAX_MESSAGE_BYTES = 64 * 1024  # aiortc's SCTP message limit; the page shrinks image prompts to fit
MAX_PROMPT_IMAGE_PIXELS = 4096 * 4096
_BOOL_FIELDS = ("smoothing", "passthrough", "mirror")
CONTROL_FIELDS = ("prompt", "prompt_image", "view", "mode", *_BOOL_FIELDS)


class ProtocolError(ValueError):
    """A message the server cannot act on; the text is sent back to the page."""


def _refuse_constant(name: str) -> None:
    raise ProtocolError(f"message is not valid JSON: {name} is not a number JSON allows")


def load_json(raw: str | bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Any:
    """Parse untrusted JSON: bounded size, no NaN/Infinity, and deep nesting is a ProtocolError
    (Python's parser would raise RecursionError, which callers do not expect from bad input)."""
    if len(raw) > max_bytes:
        raise ProtocolError(f"message too large ({len(raw)} bytes, limit {max_bytes})")
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProtocolError(f"message is not valid JSON: {err}") from None
    except RecursionError:
        raise ProtocolError("message is not valid JSON: nested too deeply") from None


def parse_message(raw: str | bytes) -> dict[str, Any]:
    """Decode one data-channel message into a dict with a known `type`."""
    msg = load_json(raw)
    if not isinstance(msg, dict) or msg.get("type") not in ("control", "ping"):
        raise ProtocolError("message must be a JSON object with type 'control' or 'ping'")
    return msg


def control_changes(msg: dict[str, Any]) -> dict[str, Any]:
    """Translate a `control` message into keyword arguments for `Control.update`."""
    unknown = set(msg) - {"type", *CONTROL_FIELDS}
    if unknown:
        raise ProtocolError(f"unknown control fields {sorted(unknown)}; allowed: {', '.join(CONTROL_FIELDS)}")
    changes: dict[str, Any] = {}
    if "prompt" in msg:
        try:
            changes["prompt_text"] = clean_prompt(msg["prompt"])
        except ValueError as err:  # callers expect bad input as a ProtocolError
            raise ProtocolError(str(err)) from None
        changes.setdefault("prompt_image", None)
    if "prompt_image" in msg:
        if msg["prompt_image"] is not None:
            changes["prompt_image"] = decode_data_url(msg["prompt_image"])
            changes.setdefault("prompt_text", None)
        elif "prompt" not in msg:
            changes["prompt_image"] = None
    if "view" in msg:
        changes["view"] = _view(msg["view"])
    if "mode" in msg:
        if msg["mode"] not in MODES:
            raise ProtocolError(f"unknown mode {msg['mode']!r}; choose one of {', '.join(MODES)}")
        changes["mode"] = msg["mode"]
    for name in _BOOL_FIELDS:
        if name in msg:
            if not isinstance(msg[name], bool):
                raise ProtocolError(f"{name} must be true or false, got {msg[name]!r}")
            changes[name] = msg[name]
    if not changes:
        raise ProtocolError("control message changes nothing")
    return changes


def _view(value: Any) -> ViewSpec:
    """`"frontal"`, `"orbit"`, `"yaw=20,pitch=-5"` or `{"yaw": 20, "pitch": -5}` (degrees)."""
    if isinstance(value, dict):
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value.values())
        if set(value) - {"yaw", "pitch"} or not numeric:
            raise ProtocolError(f"view object takes finite numeric 'yaw' and 'pitch' (degrees), got {value!r}")
        yaw, pitch = float(value.get("yaw", 0.0)), float(value.get("pitch", 0.0))
        if abs(yaw) > 90 or abs(pitch) > 60:
            raise ProtocolError(f"view out of range: yaw must be within ±90°, pitch within ±60°, got {yaw}, {pitch}")
        return ViewSpec("fixed", yaw_deg=yaw, pitch_deg=pitch)
    if isinstance(value, str):
        try:
            return ViewSpec.parse(value)
        except ValueError as err:
            raise ProtocolError(str(err)) from None
    raise ProtocolError(f"view must be a string or an object, got {type(value).__name__}")


def decode_data_url(url: Any) -> np.ndarray:
    """A `data:image/...;base64,...` URL (PNG/JPEG) -> HxWx3 uint8 RGB."""
    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise ProtocolError("prompt_image must be a data:image/...;base64 URL")
    try:
        data = base64.b64decode(url.split(",", 1)[1], validate=True)
    except (ValueError, binascii.Error):
        raise ProtocolError("prompt_image is not valid base64") from None
    if not data:
        raise ProtocolError("prompt_image is empty")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        bgr = None
    if bgr is None:
        raise ProtocolError("prompt_image could not be decoded as an image")
    if bgr.shape[0] * bgr.shape[1] > MAX_PROMPT_IMAGE_PIXELS:
        raise ProtocolError(f"prompt_image is too large ({bgr.shape[1]}x{bgr.shape[0]})")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def state_message(state: ControlState) -> dict[str, Any]:
    """The current settings, everything the page's controls show: `view` is the string form
    (`frontal`, `orbit`, `yaw=20,pitch=-5`) and `view_angles` the fixed view's `{yaw, pitch}`
    in degrees (null for frontal and orbit), so the page need not parse the string."""
    view = state.view
    return {
        "type": "state",
        "version": state.version,
        "prompt": state.prompt_text,
        "prompt_image": state.prompt_image is not None,
        "view": str(view),
        "view_angles": {"yaw": view.yaw_deg, "pitch": view.pitch_deg} if view.kind == "fixed" else None,
        "mode": state.mode,
        **{name: getattr(state, name) for name in _BOOL_FIELDS},
    }


def prompt_match_message(feedback: dict[str, Any]) -> dict[str, Any]:
    """The nearest known style of the prompt just applied (`known_styles.prompt_feedback`)."""
    return {"type": "prompt_match", **feedback}


def stats_message(snapshot: dict[str, Any], applied_version: int | None) -> dict[str, Any]:
    """A `Stats.snapshot()` plus the control version of the last frame sent to the page."""
    return {"type": "stats", **snapshot, "applied_version": applied_version}


def error_message(err: Exception) -> dict[str, Any]:
    return {"type": "error", "message": str(err)}

"""The data-channel protocol: messages become Control updates, bad ones are refused with reasons."""
from __future__ import annotations

import base64
import json

import cv2
import numpy as np
import pytest

from live3dpe.stream.control import Control
from live3dpe.webapp import protocol

pytestmark = pytest.mark.timeout(30)


def _control(**fields) -> dict:
    return protocol.control_changes(protocol.parse_message(json.dumps({"type": "control", **fields})))


def test_prompt_view_and_flags_apply_in_one_update():
    control = Control()
    state = control.update(**_control(prompt="  a bronze statue ", view={"yaw": 20, "pitch": -5}, smoothing=False))
    assert state.prompt_text == "a bronze statue"
    assert (state.view.kind, state.view.yaw_deg, state.view.pitch_deg) == ("fixed", 20.0, -5.0)
    assert state.smoothing is False
    assert state.version == 1 and state.prompt_version == 1
    msg = protocol.state_message(state)
    assert msg["prompt"] == "a bronze statue" and msg["view"] == "yaw=20,pitch=-5" and msg["version"] == 1
    json.dumps(msg)


def test_state_message_starts_from_initial_settings_and_gives_view_angles():
    """What the page fills its form from: a `serve --prompt` shows, and a fixed view comes as numbers."""
    control = Control(prompt_text="golden statue", mirror=True)
    msg = protocol.state_message(control.get())
    assert msg["prompt"] == "golden statue" and msg["prompt_image"] is False
    assert (msg["view"], msg["view_angles"], msg["mode"], msg["mirror"]) == ("frontal", None, "paste", True)
    assert msg["version"] == control.version
    msg = protocol.state_message(control.update(**_control(view="yaw=-25", mode="view")))
    assert msg["view_angles"] == {"yaw": -25.0, "pitch": 0.0} and msg["mode"] == "view"
    assert protocol.state_message(control.update(**_control(view="orbit")))["view_angles"] is None


def test_view_strings_and_empty_prompt():
    assert _control(view="orbit")["view"].kind == "orbit"
    assert _control(view="yaw=10")["view"].yaw_deg == 10.0
    assert _control(prompt="   ")["prompt_text"] is None


def test_image_prompt_replaces_text_prompt():
    img = np.zeros((8, 10, 3), np.uint8)
    img[..., 0] = 255  # red in RGB
    ok, png = cv2.imencode(".png", img[:, :, ::-1])
    assert ok
    url = "data:image/png;base64," + base64.b64encode(png.tobytes()).decode()
    changes = _control(prompt_image=url)
    assert changes["prompt_text"] is None
    assert changes["prompt_image"].shape == (8, 10, 3)
    assert changes["prompt_image"][0, 0].tolist() == [255, 0, 0]
    state = Control(prompt_text="old").update(**changes)
    assert state.prompt_text is None and state.prompt_image is not None


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("not json", "not valid JSON"),
        (json.dumps([1, 2]), "JSON object"),
        (json.dumps({"type": "hack"}), "type 'control'"),
        ("x" * (protocol.MAX_MESSAGE_BYTES + 1), "too large"),
    ],
)
def test_bad_messages_are_refused(raw, needle):
    with pytest.raises(protocol.ProtocolError, match=needle):
        protocol.parse_message(raw)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"colour": "red"}, "unknown control fields"),
        ({"prompt": 3}, "prompt must be a string"),
        ({"prompt": "x" * 500}, "too long"),
        ({"view": "sideways"}, "bad view"),
        ({"view": {"yaw": 200}}, "out of range"),
        ({"view": {"roll": 1}}, "numeric 'yaw' and 'pitch'"),
        ({"mode": "zoom"}, "unknown mode"),
        ({"smoothing": "yes"}, "true or false"),
        ({"prompt_image": "http://example.com/a.png"}, "data:image"),
        ({"prompt_image": "data:image/png;base64,AAAA"}, "could not be decoded"),
        ({}, "changes nothing"),
    ],
)
def test_bad_control_fields_are_refused(fields, needle):
    with pytest.raises(protocol.ProtocolError, match=needle):
        _control(**fields)


def test_stats_message_is_json_and_carries_applied_version():
    from live3dpe.stream.stats import Stats

    msg = protocol.stats_message(Stats().snapshot(), applied_version=4)
    assert json.loads(json.dumps(msg))["applied_version"] == 4
    assert msg["type"] == "stats" and "fps" in msg

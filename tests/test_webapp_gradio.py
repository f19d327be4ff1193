"""`live3dpe ui` launched for real and driven through gradio_client (its HTTP API)."""
from __future__ import annotations

import socket
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.timeout(240)

MAX_UPLOAD_MB = 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """The app on a free loopback port; records every outgoing connection made while starting."""
    from live3dpe.model.editor import Editor
    from live3dpe.webapp.gradio_app import launch
    from live3dpe.webapp.styles import StyleBook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random tiny weights
        editor = Editor.load("tiny")
    attempts: list = []
    original = socket.socket.connect

    def connect(self, address):
        attempts.append(address)
        return original(self, address)

    socket.socket.connect = connect
    try:
        app, url = launch(
            StyleBook(editor), port=_free_port(), max_upload_mb=MAX_UPLOAD_MB, block=False,
            workdir=tmp_path_factory.mktemp("ui"),
        )
    finally:
        socket.socket.connect = original
    yield url, attempts
    app.close()


@pytest.fixture(scope="module")
def portrait_png(tmp_path_factory) -> Path:
    from skimage.data import astronaut

    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    cv2.imwrite(str(path), astronaut()[:, :, ::-1])
    return path


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=True)


def _read(path: str) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return img[:, :, ::-1]


def test_startup_binds_loopback_and_calls_nobody(ui):
    url, attempts = ui
    assert url.startswith("http://127.0.0.1:")
    hosts = {a[0] for a in attempts if isinstance(a, tuple)}
    assert hosts <= {"127.0.0.1", "::1", "localhost"}, f"network calls at start-up: {hosts}"


@pytest.mark.slow
def test_edit_views_orbit_and_mesh(ui, portrait_png):
    from gradio_client import handle_file

    client = _client(ui[0])
    crop, edited, novel = client.predict(
        handle_file(str(portrait_png)), "a bronze statue", None, "default", 25, 0, api_name="/edit"
    )
    crop, edited, novel = _read(crop), _read(edited), _read(novel)
    assert crop.shape == (512, 512, 3)
    assert edited.shape == novel.shape and edited.shape[2] == 3
    assert not np.array_equal(edited, novel)  # another camera, another image (random tiny weights: subtle)

    # the state (planes) lives in the session: views need no re-upload
    left = _read(client.predict(-30, 0, api_name="/view"))
    right = _read(client.predict(30, 0, api_name="/view"))
    assert not np.array_equal(left, right)

    video = client.predict(8, api_name="/orbit")
    import av

    with av.open(video) as c:
        assert sum(1 for _ in c.decode(video=0)) == 8

    mesh = Path(client.predict(api_name="/mesh"))
    head = mesh.read_bytes()[:400]
    assert head.startswith(b"ply") and b"element face" in head


def test_clear_errors_for_no_face_and_missing_edit(ui, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((256, 256, 3), 128, np.uint8))
    client = _client(ui[0])
    with pytest.raises(AppError, match="no face found"):
        client.predict(handle_file(str(blank)), "", None, "default", 0, 0, api_name="/edit")
    with pytest.raises(AppError, match="edit a portrait first"):
        client.predict(0, 0, api_name="/view")
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(handle_file(str(blank)), "", None, "nope", 0, 0, api_name="/edit")


def test_upload_size_limit(ui):
    import httpx  # gradio's own HTTP client

    big = b"\0" * (MAX_UPLOAD_MB * 1024 * 1024 + 1024)
    resp = httpx.post(f"{ui[0]}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=30)
    assert resp.status_code == 413


@pytest.mark.slow
def test_customize_then_edit_with_the_new_style(ui, portrait_png):
    from gradio_client import handle_file

    client = _client(ui[0])
    status, _, _, phrase = client.predict(
        "synthetic", "marble", 1, [], [], "", None, "my marble", 5, api_name="/customize"
    )
    assert "my marble" in status and phrase
    crop, edited, _ = client.predict(handle_file(str(portrait_png)), phrase, None, "my marble", 0, 0, api_name="/edit")
    assert _read(edited).ndim == 3


def test_webcam_frames_go_through_the_live_pipeline(tmp_path):
    """The webcam tab's stream handler (gradio_client cannot drive streaming events, so it is called directly)."""
    from skimage.data import astronaut

    from live3dpe.model.editor import Editor
    from live3dpe.webapp.gradio_app import UiHandlers
    from live3dpe.webapp.styles import StyleBook

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        h = UiHandlers(StyleBook(Editor.load("tiny")), tmp_path)
    sent = astronaut()
    out, session = h.live(sent, "a marble statue", "default", None)
    assert out.shape == sent.shape
    diff = np.abs(out.astype(int) - sent).max(axis=-1)
    assert np.percentile(diff, 99) > 40 and np.median(diff) < 8  # the face is edited, the rest pasted back
    again, same = h.live(sent, "a marble statue", "default", session)
    assert same is session and session.control.get().prompt_version == 1  # prompt encoded once per change
    assert h.live(None, "", "default", session) == (None, session)

"""The Editor inference API on the tiny preset: end to end, determinism, input validation."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from live3dpe.model import editor as editor_module
from live3dpe.model.cameras import Camera
from live3dpe.model.checkpoint import build_net, save_checkpoint
from live3dpe.model.config import TINY, get_preset
from live3dpe.model.editor import Editor
from live3dpe.model.types import Planes, PromptEmbedding


@pytest.fixture(scope="module")
def editor() -> Editor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Editor.load("tiny")


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (TINY.input_resolution,) * 2 + (3,), dtype=np.uint8)


def test_properties(editor):
    assert editor.config == TINY
    assert editor.input_resolution == 128 and editor.output_resolution == 128
    assert editor.device == torch.device("cpu")
    assert not editor.net.training
    assert not any(p.requires_grad for p in editor.net.parameters())


def test_end_to_end_all_prompt_kinds_and_views(editor, face):
    x = editor.preprocess(face)
    assert x.shape == (1, 3, 128, 128) and x.min() >= -1 and x.max() <= 1
    reference = np.random.default_rng(1).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    prompts = {
        "none": None,
        "text": editor.encode_prompt(text="a smiling elf"),
        "image": editor.encode_prompt(image=reference),
    }
    assert prompts["text"].source == "text" and prompts["image"].source == "image"
    triplanes = {}
    for name, prompt in prompts.items():
        planes = editor.encode(x, prompt)
        assert planes.tensor.shape == (1, TINY.triplane_channels, 64, 64)
        assert torch.isfinite(planes.tensor).all(), name
        triplanes[name] = planes.tensor
        # frontal and yaw = 30 deg in one call: one plane set, two cameras -> two views
        out = editor.render(planes, Camera.from_yaw_pitch(torch.tensor([0.0, math.radians(30)]), torch.zeros(2)))
        assert out.image.shape == (2, 3, 128, 128)
        assert out.depth.shape == (2, 1, 32, 32)
        assert torch.isfinite(out.image).all() and torch.isfinite(out.depth).all()
        assert not torch.equal(out.image[0], out.image[1])
        frames = editor.postprocess(out.image)
        assert frames.shape == (2, 128, 128, 3) and frames.dtype == np.uint8
    # the prompt reaches the triplane
    assert not torch.equal(triplanes["none"], triplanes["text"])
    assert not torch.equal(triplanes["text"], triplanes["image"])


def test_encode_splits_into_features_and_fuse(editor, face):
    """The live pipeline encodes and fuses in two stages; a new prompt reuses the features."""
    x = editor.preprocess(face)
    features = editor.encode_features(x)
    assert features.high.shape == (1, TINY.ehigh_channels[1], 32, 32) and features.f.shape == (1, TINY.f_out_channels, 32, 32)
    for prompt in (None, editor.encode_prompt(text="a smiling elf")):
        assert torch.equal(editor.fuse(features, prompt).tensor, editor.encode(x, prompt).tensor)
    with pytest.raises(TypeError, match="Features"):
        editor.fuse(editor.encode(x))


def test_render_is_deterministic_by_default(editor, face):
    planes = editor.encode(editor.preprocess(face))
    cam = Camera.from_yaw_pitch(math.radians(30), 0.0)
    a = editor.render(planes, cam)
    b = editor.render(planes, cam)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    jittered = editor.render(planes, cam, deterministic=False)
    assert not torch.equal(jittered.depth, a.depth)


def test_bfloat16_autocast_close_to_float32(editor, face):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        half = Editor.load("tiny", dtype=torch.bfloat16)
    x = half.preprocess(face)
    assert x.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in half.net.parameters())  # weights stay float32
    cam = Camera.frontal()
    low = half.render(half.encode(x), cam).image.float()
    ref = editor.render(editor.encode(editor.preprocess(face)), cam).image
    assert torch.isfinite(low).all()
    assert (low - ref).abs().mean() < 0.05 * ref.abs().mean()
    with pytest.raises(ValueError, match="dtype"):
        Editor.load("tiny", dtype=torch.float64)


def test_encode_prompt_cached_per_weights_version(editor):
    first = editor.encode_prompt(text="a zombie")
    assert editor.encode_prompt(text="a zombie") is first
    version = editor.weights_version
    try:
        editor.weights_version = "fine-tuned"
        assert editor.encode_prompt(text="a zombie") is not first
    finally:
        editor.weights_version = version
    assert editor.encode_prompt(text="a zombie") is first


def test_package_exports_are_lazy():
    import subprocess
    import sys

    code = (
        "import sys, live3dpe.model as m; assert 'live3dpe.model.network' not in sys.modules; "
        "assert 'transformers' not in sys.modules; "
        "from live3dpe.model.editor import Editor; assert m.Editor is Editor and m.save_checkpoint and m.Camera"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_edit_convenience(editor, face):
    out = editor.edit(np.stack([face, face]), "a smiling elf")
    assert out.shape == (2, 128, 128, 3) and out.dtype == np.uint8
    assert np.array_equal(out[0], out[1])
    single = editor.edit(face, None, Camera.from_yaw_pitch(0.3, 0.1))
    assert single.shape == (1, 128, 128, 3)


def test_postprocess_quantisation():
    img = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = Editor.postprocess(img)
    assert out.shape == (1, 1, 5, 3)
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_bad_inputs(editor, face):
    with pytest.raises(ValueError, match="128x128"):
        editor.preprocess(face[:100])
    with pytest.raises(ValueError, match="RGB"):
        editor.preprocess(face[..., :2])
    with pytest.raises(TypeError, match="uint8"):
        editor.preprocess(face.astype(np.float32))
    with pytest.raises(TypeError, match="numpy"):
        editor.preprocess(torch.from_numpy(face))
    x = editor.preprocess(face)
    with pytest.raises(ValueError, match="NaN"):
        editor.encode(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="channels"):
        editor.encode(torch.zeros(1, 4, 128, 128))
    with pytest.raises(ValueError, match="128x128"):
        editor.encode(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="prompt tokens"):
        editor.encode(x, PromptEmbedding(torch.zeros(1, 5, 7), "text", "bad"))
    with pytest.raises(TypeError, match="PromptEmbedding"):
        editor.encode(x, "a smiling elf")
    planes = editor.encode(x)
    with pytest.raises(ValueError, match=r"\[B, 25\]"):
        editor.render(planes, torch.zeros(1, 16))
    with pytest.raises(ValueError, match="NaN"):
        editor.render(planes, torch.full((1, 25), float("nan")))
    with pytest.raises(ValueError, match="batch mismatch"):
        editor.render(Planes(planes.tensor.expand(2, -1, -1, -1)), Camera.frontal(3))
    with pytest.raises(TypeError, match="Planes"):
        editor.render(planes.tensor, Camera.frontal())
    with pytest.raises(ValueError, match=r"\[B, 3, S, S\]"):
        editor.postprocess(torch.zeros(3, 8, 8))


def test_load_sources(tmp_path, monkeypatch):
    missing = tmp_path / "none.safetensors"
    monkeypatch.setattr(editor_module, "DEFAULT_WEIGHTS", missing)
    with pytest.warns(RuntimeWarning, match="RANDOMLY INITIALISED"):
        random_editor = Editor.load("default")
    assert random_editor.config == get_preset(editor_module.DEFAULT_PRESET)  # the bundled preset, untrained
    with pytest.raises(ValueError, match="weights import"):
        Editor.load(tmp_path / "3dpe.pt")
    with pytest.raises(ValueError, match="preset"):
        Editor.load("huge")
    with pytest.raises(FileNotFoundError):
        Editor.load(missing)

    torch.manual_seed(3)
    net = build_net(TINY)
    saved = tmp_path / "trained.safetensors"
    meta = save_checkpoint(net, saved, {"steps": 1})
    monkeypatch.setattr(editor_module, "DEFAULT_WEIGHTS", saved)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a real checkpoint loads without warnings
        loaded = Editor.load("default")
    assert loaded.weights_version == meta.sha256 and loaded.meta.training == {"steps": 1}
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[k], v), k


def test_random_init_reproducible_and_rng_untouched():
    state = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a, b = Editor.load("tiny"), Editor.load("tiny")
    assert torch.equal(state, torch.get_rng_state())
    for k, v in a.net.state_dict().items():
        assert torch.equal(b.net.state_dict()[k], v), k


def test_unavailable_recorded_backend_disables_text_only(tmp_path):
    saved = tmp_path / "clip.safetensors"
    save_checkpoint(build_net(TINY, text_dim=32, text_backend=f"clip:{tmp_path / 'gone'}"), saved)
    editor = Editor.load(saved)
    assert editor.text_backend is None
    with pytest.raises(RuntimeError, match="no text back-end"):
        editor.encode_prompt(text="elf")
    assert editor.encode_prompt(image=np.zeros((32, 32, 3), np.uint8)).source == "image"
    with pytest.raises(FileNotFoundError):
        Editor.load(saved, text_backend=f"clip:{tmp_path / 'gone'}")

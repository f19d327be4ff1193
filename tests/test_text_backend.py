"""A non-default text back-end through training, the checkpoint and `Editor.load`.

The back-end is a real `clip:<dir>` (a tiny random CLIP text model saved locally, no download):
training encodes its prompts with it and records it, loading picks it up, a mismatch is refused.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from test_train import MICRO  # tests/ is on sys.path (rootdir-relative import mode)
from tiny_clip import save_tiny_clip

from live3dpe.cli import main
from live3dpe.model.checkpoint import build_net, read_meta
from live3dpe.model.editor import Editor
from live3dpe.model.text_prompt import DEFAULT_TEXT_BACKEND, TEXT_BACKENDS, CLIPTextBackend, make_text_backend
from live3dpe.synth.dataset import SynthConfig, write_dataset
from live3dpe.train.adapt import write_pairs
from live3dpe.train.data import SynthDataSource
from live3dpe.train.loop import LoopConfig
from live3dpe.train.stages import StageConfig, join_stages, train_prior
from live3dpe.train.teachers import to_uint8

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip")
    save_tiny_clip(path)
    return path


@pytest.fixture(scope="module")
def clip_name(clip_dir) -> str:
    return f"clip:{clip_dir.resolve()}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, SynthConfig(people=3, views=2, styles=("red_hair", "blue_skin"), resolution=MICRO.input_resolution, references=1))
    return root


def _prior(dataset: Path, out: Path, text_backend=None) -> Path:
    source = SynthDataSource(dataset, MICRO.ref_resolution, text=None)
    train_prior(source, out, LoopConfig(steps=1, progress=False), StageConfig(batch=1), model=MICRO, text_backend=text_backend)
    return out


def _edit(dataset: Path, prior: Path, out: Path, *flags: str) -> Path:
    """`live3dpe train edit` on text prompts only: each step runs a CLIP-encoded prompt through the
    projection, which raises on features of any other width (MiniLM's are 384-d, CLIP's here 32)."""
    argv = ["train", "edit", "--data", str(dataset), "--prior", str(prior), "--out", str(out), "--steps", "2", "--batch", "1", "--image-prompt-prob", "0"]
    assert main([*argv, *flags]) == 0
    return out


@pytest.fixture(scope="module")
def runs(dataset, clip_dir, tmp_path_factory) -> dict[str, Path]:
    """A default-back-end prior edited with `--text-backend clip:<dir>`, and a CLIP prior edited
    without the flag (stage 2 keeps the prior's back-end)."""
    root = tmp_path_factory.mktemp("runs")
    default_prior = _prior(dataset, root / "default_prior.safetensors")
    clip_prior = _prior(dataset, root / "clip_prior.safetensors", make_text_backend(f"clip:{clip_dir}"))
    return {
        "default_prior": default_prior,
        "clip_prior": clip_prior,
        "switched": _edit(dataset, default_prior, root / "switched.safetensors", "--text-backend", f"clip:{clip_dir}"),
        "kept": _edit(dataset, clip_prior, root / "kept.safetensors"),
    }


def test_training_records_the_backend_it_used(runs, clip_name):
    assert read_meta(runs["default_prior"]).text_backend == DEFAULT_TEXT_BACKEND
    for run in ("clip_prior", "switched", "kept"):
        meta = read_meta(runs[run])
        assert (meta.text_backend, meta.text_dim) == (clip_name, 32), run
    assert read_meta(runs["switched"]).training["step"] == 2


def test_editor_load_picks_up_the_recorded_backend_and_encodes_with_it(runs, clip_dir, clip_name):
    editor = Editor.load(runs["switched"])
    assert isinstance(editor.text_backend, CLIPTextBackend) and editor.text_backend.name == clip_name
    prompt = editor.encode_prompt(text="a smile")
    features = make_text_backend(clip_name).encode("a smile")
    with torch.inference_mode():
        expected = editor.net.text_prompt(features.tokens, features.pooled)
    assert prompt.tokens.shape == (1, 4 + 6, MICRO.ref_dim)  # slots + bos, a, sm, i, le, eos
    torch.testing.assert_close(prompt.tokens, expected)
    # the same back-end given explicitly, spelled another way, is accepted
    same = Editor.load(runs["switched"], text_backend=f"clip:{clip_dir / '..' / clip_dir.name}")
    torch.testing.assert_close(same.encode_prompt(text="a smile").tokens, prompt.tokens)


def test_a_mismatched_backend_is_refused_naming_both(runs, clip_name, tmp_path):
    with pytest.raises(ValueError, match=rf"'minilm' given.*trained on '{re.escape(clip_name)}'"):
        Editor.load(runs["kept"], text_backend="minilm")
    other = tmp_path / "other_clip"  # same width, another model: refused by name, not only by size
    save_tiny_clip(other)
    with pytest.raises(ValueError, match=rf"'clip:{re.escape(str(other.resolve()))}' given.*trained on '{re.escape(clip_name)}'"):
        Editor.load(runs["kept"], text_backend=f"clip:{other}")
    with pytest.raises(ValueError, match=rf"'{re.escape(clip_name)}' given.*trained on 'minilm'"):
        Editor.load(runs["default_prior"], text_backend=clip_name)


def test_adapt_keeps_the_recorded_backend(runs, dataset, clip_name, tmp_path):
    b = SynthDataSource(dataset, MICRO.ref_resolution, text=None).edit_batch(2, torch.Generator().manual_seed(2))
    pairs = write_pairs(tmp_path / "pairs", to_uint8(b.image), to_uint8(b.edited), b.label.numpy(), prompt="make the hair red")
    out = tmp_path / "adapted.safetensors"
    assert main(["adapt", "--pairs", str(pairs), "--checkpoint", str(runs["kept"]), "--out", str(out), "--steps", "1"]) == 0
    assert read_meta(out).text_backend == clip_name


def test_joined_stages_read_the_prompt_stage_backend(clip_name):
    prior, prompt_side = build_net(MICRO), build_net(MICRO, 32, clip_name)
    joined = join_stages(prior, prompt_side)
    assert (joined.text_prompt.backend, joined.text_prompt.in_dim) == (clip_name, 32)
    torch.testing.assert_close(joined.text_prompt.token_proj.weight, prompt_side.text_prompt.token_proj.weight, rtol=0, atol=0)


def test_backend_specs_come_from_the_registry(clip_dir, clip_name):
    assert DEFAULT_TEXT_BACKEND in TEXT_BACKENDS
    assert make_text_backend(clip_name).name == clip_name  # a recorded name makes the same back-end
    for bad in ("bert", "minilm:extra", "clip:", "clip"):
        with pytest.raises(ValueError, match=r"unknown text back-end .*use one of: minilm, clip:<local model dir>"):
            make_text_backend(bad)

"""The training pipeline on a real (tiny) synthetic dataset: data source, both stages, customization, CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import MICRO  # tests/ is on sys.path (rootdir-relative import mode)

from live3dpe.cli import main
from live3dpe.model.checkpoint import load_checkpoint, save_checkpoint
from live3dpe.synth.dataset import SynthConfig, write_dataset
from live3dpe.train.adapt import AdaptConfig, adapt, load_pairs, write_pairs
from live3dpe.train.data import SynthDataSource
from live3dpe.train.loop import LoopConfig
from live3dpe.train.params import adapt_parameter_names
from live3dpe.train.stages import StageConfig, train_edit, train_prior
from live3dpe.train.teachers import to_uint8

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig(people=3, views=2, styles=("red_hair", "blue_skin"), resolution=MICRO.input_resolution, references=1)
    write_dataset(root, cfg)
    return root


def test_source_batches_pair_views_of_one_person_and_one_style(dataset):
    src = SynthDataSource(dataset, MICRO.ref_resolution, text=None)
    g = torch.Generator().manual_seed(0)
    b = src.prior_batch(4, g, views=2)
    assert b.view_images.shape == (4, 2, 3, 32, 32)
    assert torch.equal(b.view_images[:, 0], b.image)
    assert torch.isfinite(b.view_depths).all() and b.view_masks.sum() > 0
    e = src.edit_batch(3, g)
    assert e.prompt.kind == "image" and e.prompt.reference.shape == (1, 3, MICRO.ref_resolution, MICRO.ref_resolution)
    assert not torch.equal(e.edited, e.image)
    only = SynthDataSource(dataset, MICRO.ref_resolution, text=None, styles=["red_hair"])
    assert only.style_names == ["red_hair"] and 0 < len(only) < len(src)


def test_prior_batches_can_show_people_in_their_style_on_every_view(dataset):
    plain = SynthDataSource(dataset, MICRO.ref_resolution, text=None)
    styled = SynthDataSource(dataset, MICRO.ref_resolution, text=None, prior_styled_prob=1.0)
    b = styled.prior_batch(4, torch.Generator().manual_seed(0), views=2)
    edited = {tuple(lab.tolist()): e for lab, e in zip(plain.label, plain.edited, strict=True)}
    for person_views, person_labels in zip(b.view_images, b.view_labels, strict=True):
        for img, lab in zip(person_views, person_labels, strict=True):  # every view is the edited render
            assert torch.equal(img, edited[tuple(lab.tolist())])
    assert torch.equal(b.view_images[:, 0], b.image) and torch.isfinite(b.view_depths).all()
    mixed = SynthDataSource(dataset, MICRO.ref_resolution, text=None, prior_styled_prob=0.5).prior_batch(64, torch.Generator().manual_seed(0))
    from_edited = torch.stack([(mixed.image[i] == plain.edited).flatten(1).all(1).any() for i in range(64)])
    assert 10 < int(from_edited.sum()) < 54  # a mix of plain and styled people
    with pytest.raises(ValueError, match="prior_styled_prob"):
        SynthDataSource(dataset, MICRO.ref_resolution, text=None, prior_styled_prob=1.5)


def test_stages_and_customization_on_synthetic_data(dataset, tmp_path):
    src = SynthDataSource(dataset, MICRO.ref_resolution, text=None)
    prior_ckpt, edit_ckpt = tmp_path / "prior.safetensors", tmp_path / "edit.safetensors"
    train_prior(src, prior_ckpt, LoopConfig(steps=2, progress=False), StageConfig(batch=2), model=MICRO)
    train_edit(src, prior_ckpt, edit_ckpt, LoopConfig(steps=2, progress=False), StageConfig(batch=2))
    net, _ = load_checkpoint(edit_ckpt)
    before = {k: v.clone() for k, v in net.state_dict().items()}

    # pairs folder round trip: before/after images, labels and an image prompt
    b = src.edit_batch(4, torch.Generator().manual_seed(1))
    ref = to_uint8(b.image[:1])[0]
    folder = write_pairs(tmp_path / "pairs", to_uint8(b.image), to_uint8(b.edited), b.label.numpy(), reference=ref, style="mine")
    pairs = load_pairs(folder, MICRO.input_resolution, MICRO.ref_resolution)
    assert pairs.prompt.kind == "image" and pairs.prompt.style == "mine"
    assert torch.allclose(pairs.label, b.label) and (pairs.before - b.image).abs().max() < 1 / 127

    calls = []
    history = adapt(net, pairs, AdaptConfig(minutes=10, max_steps=3), on_eval=lambda m: calls.append(1) or {"score": 1.0}, eval_at_s=(1e9,))
    assert [r["step"] for r in history] == [0, 1, 2, 3] and len(calls) == 2  # at 0 and at the end
    allowed = set(adapt_parameter_names(net, "image"))
    after = net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= allowed


@pytest.mark.slow  # loads the MiniLM text encoder
def test_adapt_cli_writes_checkpoint_and_log(dataset, tmp_path):
    src = SynthDataSource(dataset, MICRO.ref_resolution, text=None)
    train_prior(src, tmp_path / "p.safetensors", LoopConfig(steps=1, progress=False), StageConfig(batch=1), model=MICRO)
    net, _ = load_checkpoint(tmp_path / "p.safetensors")
    save_checkpoint(net, tmp_path / "m.safetensors", {"note": "test"})
    b = src.edit_batch(2, torch.Generator().manual_seed(2))
    folder = write_pairs(tmp_path / "pairs", to_uint8(b.image), to_uint8(b.edited), b.label.numpy(), prompt="make the hair red")
    out = tmp_path / "adapted.safetensors"
    rc = main(["adapt", "--pairs", str(folder), "--checkpoint", str(tmp_path / "m.safetensors"), "--out", str(out), "--steps", "2", "--minutes", "5"])
    assert rc == 0
    adapted, meta = load_checkpoint(out)
    assert meta.training["adapted"]["pairs"] == 2 and meta.training["adapted"]["prompt"] == "make the hair red"
    log = out.with_name("adapted.adapt.csv").read_text().splitlines()
    assert log[0].startswith("step,time_s") and len(log) == 3
    text_changed = any(not torch.equal(a, b) for (k, a), b in zip(net.state_dict().items(), adapted.state_dict().values()) if k.startswith("text_prompt."))
    assert text_changed

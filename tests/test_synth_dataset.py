"""Dataset writer and EG3D-layout reader round trip; the `data synth` command."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from live3dpe.cli import main
from live3dpe.synth.dataset import EG3DDataset, SynthConfig, _person_samples, write_dataset
from live3dpe.synth.styles import STYLES

CFG = SynthConfig(people=2, views=2, styles=("red_hair", "clown"), resolution=32, references=1, seed=5)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, CFG)
    return root


def test_writer_reader_round_trip(written):
    ds = EG3DDataset(written, extras=True)
    assert len(ds) == CFG.people * CFG.views
    expected = [s for i in range(CFG.people) for s in _person_samples(CFG, i)]
    for item, s in zip(ds, expected):
        assert torch.equal(item["label"], torch.as_tensor(s["label"], dtype=torch.float32))
        image = ((item["image"] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(image, s["image"])
        edited = ((item["edited"] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
        assert np.array_equal(edited, s["edited"])
        assert torch.equal(item["mask"][0].bool(), torch.from_numpy(s["mask"]))
        finite = np.isfinite(s["depth"])
        assert np.allclose(item["depth"][0].numpy()[finite], s["depth"][finite], rtol=1e-3)
        assert item["style"] == s["style"] and item["phrase"] == s["phrase"] and item["person"] == s["person"]
        assert item["reference"].shape == (3, 32, 32)


def test_root_is_a_plain_eg3d_dataset(written):
    """Only the input views are images, every one labelled, as EG3D's loader requires."""
    labels = dict(json.loads((written / "dataset.json").read_text())["labels"])
    images = sorted(p.relative_to(written).as_posix() for p in written.rglob("*.png"))
    assert images == sorted(labels) and all(len(v) == 25 for v in labels.values())
    meta = json.loads((written / "synth.json").read_text())
    assert set(meta["styles"]) == set(CFG.styles) and len(meta["samples"]) == len(images)
    for name, texts in meta["styles"].items():  # stage 2 trains on the looks too, never on held-out phrasings
        assert texts == {"train": list(STYLES[name].training_texts), "heldout": list(STYLES[name].heldout_phrases)}


def test_reader_accepts_zip_without_extras(written, tmp_path):
    archive = tmp_path / "ffhq-like.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(written / "dataset.json", "dataset.json")
        for p in written.rglob("*.png"):
            z.write(p, p.relative_to(written).as_posix())
    plain = EG3DDataset(archive)
    folder = EG3DDataset(written)
    assert len(plain) == len(folder)
    assert torch.equal(plain[1]["image"], folder[1]["image"]) and torch.equal(plain.labels, folder.labels)
    with pytest.raises(FileNotFoundError):
        EG3DDataset(archive, extras=True)


def test_reader_rejects_unlabelled_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": []}))
    with pytest.raises(ValueError):
        EG3DDataset(tmp_path)


def test_cli_data_synth(tmp_path):
    out = tmp_path / "ds"
    rc = main(["data", "synth", "--out", str(out), "--people", "1", "--views", "1", "--resolution", "24",
               "--styles", "grey_hair", "--references", "1"])  # fmt: skip
    assert rc == 0
    assert len(EG3DDataset(out)) == 1

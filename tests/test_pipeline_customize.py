"""Customize tab: a style adapted from pairs is registered and usable at once, via the running UI."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


@pytest.fixture(scope="module")
def editor():
    from live3dpe.model.editor import Editor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # random tiny weights
        return Editor.load("tiny")


def test_adapt_copies_the_editor_and_reports_progress(editor):
    from live3dpe.pipeline.customize import adapt_editor, synthetic_pairs

    pairs = synthetic_pairs(editor, "marble", n=2)
    before = {k: v.clone() for k, v in editor.net.named_parameters()}
    seen: list[float] = []
    adapted = adapt_editor(editor, pairs, seconds=2, progress=lambda f, msg: seen.append(f), max_steps=2)
    assert seen[0] < 1.0 and seen[-1] == 1.0 and seen == sorted(seen)
    after = dict(adapted.net.named_parameters())
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("text_prompt" in k or "fusion" in k for k in changed)
    assert all(torch.equal(v, dict(editor.net.named_parameters())[k]) for k, v in before.items())  # base untouched
    crop = np.zeros((editor.input_resolution,) * 2 + (3,), np.uint8)
    assert adapted.edit(crop, "a marble statue").shape[-1] == 3


def test_photo_pairs_need_matching_uploads_and_a_prompt(editor):
    from live3dpe.pipeline.customize import photo_pairs

    img = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="pair up"):
        photo_pairs(editor, None, [img], [], "x", None, "s")
    with pytest.raises(ValueError, match="text prompt or a reference image"):
        photo_pairs(editor, None, [img], [img], " ", None, "s")
    with pytest.raises(ValueError, match="no face found in before image 1"):
        photo_pairs(editor, lambda _: None, [img], [img], "x", None, "s")


def test_adapt_command_aligns_photo_pairs_exactly_as_the_ui(tmp_path):
    """`live3dpe adapt` on a folder of photos gives the pairs the UI makes from the same uploads."""
    import argparse

    import cv2

    from live3dpe.cli import main
    from live3dpe.model.editor import DEFAULT_WEIGHTS, Editor
    from live3dpe.pipeline.customize import photo_pairs
    from live3dpe.pipeline.portrait import PortraitService
    from live3dpe.stream.synthetic import SyntheticFaceSource
    from live3dpe.train.commands import _aligned_photo_pairs, _pairs_are_photos

    faces = SyntheticFaceSource(320, 240, fps=10, frames=8)
    befores = [faces.recv().image for _ in range(4)][::2]  # two poses
    afters = [np.ascontiguousarray(255 - b) for b in befores]  # a "style" the after photos show
    for i, (b, a) in enumerate(zip(befores, afters)):
        cv2.imwrite(str(tmp_path / f"p{i}_before.png"), b[..., ::-1])
        cv2.imwrite(str(tmp_path / f"p{i}_after.png"), a[..., ::-1])
    (tmp_path / "prompt.txt").write_text("inverted colours\n")
    args = argparse.Namespace(pairs=str(tmp_path), checkpoint=str(DEFAULT_WEIGHTS), align="auto")
    assert _pairs_are_photos(args)
    from_folder = _aligned_photo_pairs(args)
    service = PortraitService(Editor.load(DEFAULT_WEIGHTS))
    from_ui = photo_pairs(service.editor, service.estimator, befores, afters, "inverted colours", None, tmp_path.name)
    for name in ("before", "after", "label"):
        assert torch.allclose(getattr(from_folder, name), getattr(from_ui, name), atol=1e-6), name
    assert from_folder.prompt.text == "inverted colours"
    out = tmp_path / "adapted.safetensors"
    assert main(["adapt", "--pairs", str(tmp_path), "--checkpoint", str(DEFAULT_WEIGHTS), "--out", str(out), "--steps", "1"]) == 0
    assert out.exists()

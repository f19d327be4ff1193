"""Batch entry points of `Editor` (issue 17): frames of several streams, each with its own crop,
camera and prompt (text, image or none, of any token count), run as one batch and come out as
each would alone; the prompt cross-attention's key mask (Eq. 2) is what hides the padding."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from live3dpe.model.cameras import Camera
from live3dpe.model.editor import Editor
from live3dpe.model.encoders import PromptCrossAttention
from live3dpe.model.layers import key_padding_mask
from live3dpe.model.types import Features, Guide, Planes, PromptBatch, PromptEmbedding

ATOL = 1e-5
# volume rendering amplifies float rounding (importance sampling, the sharp visibility test):
# well under one 8-bit step (2 / 255) of the [-1, 1] image
RENDER_ATOL = 1e-3


def _load(preset: str) -> Editor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Editor.load(preset)


@pytest.fixture(scope="module")
def small() -> Editor:
    """The appearance route; its editor's output layers start at zero (an identity edit), so give
    them random weights or every prompt would leave the input unchanged."""
    editor = _load("small")
    gen = torch.Generator().manual_seed(1)
    app = editor.net.appearance
    with torch.no_grad():
        for p in (app.head.weight, app.head.bias, app.film.weight, app.film.bias):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return editor


@pytest.fixture(scope="module")
def tiny() -> Editor:
    return _load("tiny")


@pytest.fixture(params=["small", "tiny"])
def editor(request) -> Editor:
    return request.getfixturevalue(request.param)


def _frames(editor: Editor, n: int, seed: int = 0) -> tuple[torch.Tensor, list[Camera]]:
    r = editor.crop_resolution
    crops = np.random.default_rng(seed).integers(0, 256, (n, r, r, 3), dtype=np.uint8)
    return editor.preprocess(crops), [Camera.from_yaw_pitch(0.1 * i - 0.15, 0.04 * i) for i in range(n)]


def _mixed_prompts(editor: Editor) -> list[PromptEmbedding | None]:
    """Text prompts of two token counts, an image prompt (another count, with colour) and none."""
    reference = np.random.default_rng(7).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    prompts = [
        editor.encode_prompt(text="elf"),
        editor.encode_prompt(image=reference),
        None,
        editor.encode_prompt(text="a golden statue with shiny metallic skin and green eyes"),
    ]
    assert len({p.tokens.shape[1] for p in prompts if p is not None}) == 3
    return prompts


def _close(a: torch.Tensor | None, b: torch.Tensor | None, atol: float = ATOL) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=atol)


def test_a_batch_of_streams_matches_each_stream_alone(editor):
    """Mixed prompts (text, image, none; three token counts) and cameras: features, planes, the
    edit field and both render paths (paste at the input camera, volume-rendered novel views)."""
    x, cameras = _frames(editor, 4)
    prompts = _mixed_prompts(editor)
    features = editor.encode_features(x, cameras)
    planes = editor.fuse(features, prompts)
    novel = [Camera.from_yaw_pitch(0.3 - 0.2 * i, 0.1) for i in range(4)]
    pasted, viewed = editor.render_image(planes, cameras), editor.render_image(planes, novel)
    for i, (f, p) in enumerate(zip(features.split(), planes.split(), strict=True)):
        alone_features = editor.encode_features(x[i : i + 1], cameras[i])
        alone = editor.fuse(alone_features, prompts[i])
        _close(f.high, alone_features.high)
        _close(p.tensor, alone.tensor)
        if editor.config.appearance_route:
            # no prompt alone has no edit field; in the batch it gets the zero field, the identity
            assert (alone.guide.edit is None) == (prompts[i] is None)
            edit = torch.zeros_like(p.guide.edit) if alone.guide.edit is None else alone.guide.edit
            _close(p.guide.edit, edit)
        _close(pasted[i : i + 1], editor.render_image(alone, cameras[i]))
        _close(viewed[i : i + 1], editor.render_image(alone, novel[i]), RENDER_ATOL)
    if editor.config.appearance_route:
        assert (planes.guide.edit[2] == 0).all() and planes.guide.edit[[0, 1, 3]].abs().amax() > 0
        assert torch.equal(pasted[2:3], x[2:3])  # no prompt, input camera: the input itself
    # the prompts reach their own samples: two different prompts on the same frame differ
    same_frame = editor.fuse(Features.cat([features.split()[0]] * 2), prompts[:2])
    a, b = same_frame.split()
    assert not torch.equal(*((a.guide.edit, b.guide.edit) if editor.config.appearance_route else (a.tensor, b.tensor)))


def test_a_batch_may_mix_pasted_and_rendered_samples(small):
    x, cameras = _frames(small, 3, seed=3)
    planes = small.fuse(small.encode_features(x, cameras), small.encode_prompt(text="elf"))
    mixed = [cameras[0], Camera.from_yaw_pitch(0.5, 0.0), cameras[2]]
    image = small.render_image(planes, mixed)
    for i, p in enumerate(planes.split()):
        _close(image[i : i + 1], small.render_image(p, mixed[i]), RENDER_ATOL)
    no_geometry = small.fuse(small.encode_features(x, cameras, geometry=False), None)
    assert torch.equal(small.render_image(no_geometry, cameras), x)
    with pytest.raises(ValueError, match="no geometry"):
        small.render_image(no_geometry, mixed)


def _padded(batch: PromptBatch, extra: int, fill: torch.Tensor | None) -> PromptBatch:
    """The same prompts padded with `extra` more tokens: zeros, or `fill` (garbage)."""
    b, _, d = batch.tokens.shape
    pad = torch.zeros(b, extra, d) if fill is None else fill
    mask = torch.cat([batch.mask, torch.zeros(b, extra, dtype=torch.bool)], 1)
    return PromptBatch(torch.cat([batch.tokens, pad], 1), mask, batch.colour, batch.keys)


def _edited(editor: Editor, planes: Planes) -> torch.Tensor:
    return planes.guide.edit if editor.config.appearance_route else planes.tensor


def test_padding_tokens_have_no_effect_with_the_mask_and_do_without_it(editor):
    x, cameras = _frames(editor, 4, seed=5)
    features = editor.encode_features(x, cameras)
    batch = editor.stack_prompts(_mixed_prompts(editor))
    garbage = 5 * torch.randn(4, 6, editor.config.ref_dim, generator=torch.Generator().manual_seed(0))
    reference = _edited(editor, editor.fuse(features, batch))
    padded = _edited(editor, editor.fuse(features, _padded(batch, 6, garbage)))
    _close(padded, reference)
    # the same padded tokens with every key counted as real: the garbage changes the edit
    unmasked = _padded(batch, 6, garbage)
    unmasked = PromptBatch(unmasked.tokens, unmasked.mask | unmasked.mask.any(1, keepdim=True), batch.colour, batch.keys)
    changed = _edited(editor, editor.fuse(features, unmasked))
    for i in (0, 1, 3):  # the samples with a prompt
        assert (changed[i] - reference[i]).abs().amax() > 1e-3


def test_cross_attention_key_mask_equals_the_unpadded_prompt(tiny):
    """Eq. 2 with K = V = prompt tokens: masked keys get zero weight, whatever they hold."""
    attention: PromptCrossAttention = tiny.net.encoder.cross_attention
    gen = torch.Generator().manual_seed(2)
    query = torch.randn(2, 16, tiny.config.ref_dim, generator=gen)
    tokens = torch.randn(1, 5, tiny.config.ref_dim, generator=gen)
    padded = torch.cat([tokens, 100 * torch.randn(1, 4, tiny.config.ref_dim, generator=gen)], 1)
    mask, present = key_padding_mask(torch.arange(9)[None] < 5, 2, 9)
    assert mask.shape == (1, 1, 9) and present.tolist() == [True]
    with torch.inference_mode():
        torch.testing.assert_close(attention.attend(query, (4, 4), padded, mask), attention.attend(query, (4, 4), tokens), rtol=1e-4, atol=ATOL)
    # a sample without any real token stays finite (its result is replaced by the prompt-free path)
    empty, present = key_padding_mask(torch.zeros(2, 9, dtype=torch.bool), 2, 9)
    assert empty.all() and not present.any()
    with pytest.raises(ValueError, match="prompt mask"):
        key_padding_mask(torch.ones(3, 9, dtype=torch.bool), 2, 9)


def test_stack_prompts(small):
    prompts = _mixed_prompts(small)
    batch = small.stack_prompts(prompts)
    lengths = [0 if p is None else p.tokens.shape[1] for p in prompts]
    assert batch.tokens.shape == (4, max(lengths), small.config.ref_dim) and len(batch) == 4
    assert batch.mask.sum(1).tolist() == lengths
    assert batch.keys == tuple(None if p is None else p.key for p in prompts)
    assert torch.equal(batch.tokens[0, : lengths[0]], prompts[0].tokens[0])
    assert (batch.tokens[0, lengths[0] :] == 0).all()
    # colour statistics: the image prompt's own, zeros for text and none (as a text prompt reads)
    assert torch.equal(batch.colour[1], prompts[1].colour[0]) and (batch.colour[[0, 2, 3]] == 0).all()
    assert small.stack_prompts([prompts[0], prompts[3]]).colour is None
    assert small.stack_prompts([None, None]) is None
    with pytest.raises(TypeError, match="PromptEmbedding"):
        small.stack_prompts(["elf"])
    with pytest.raises(ValueError, match=r"\[1, N, 128\]"):
        small.stack_prompts([PromptEmbedding(torch.zeros(2, 3, 128), "text", "two")])
    x, cameras = _frames(small, 2)
    with pytest.raises(ValueError, match="3 prompts for a batch of 2"):
        small.fuse(small.encode_features(x, cameras), prompts[:3])


def test_all_none_batch_is_the_prompt_free_path(editor):
    x, cameras = _frames(editor, 2, seed=9)
    features = editor.encode_features(x, cameras)
    free, listed = editor.fuse(features, None), editor.fuse(features, [None, None])
    assert torch.equal(free.tensor, listed.tensor)
    assert (free.guide is None) == (listed.guide is None) and (free.guide is None or listed.guide.edit is None)


def _assert_same(a, b) -> None:
    for field in ("high", "f", "tensor", "image", "label", "edit"):
        if hasattr(a, field):
            x, y = getattr(a, field), getattr(b, field)
            assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), field
    if getattr(a, "guide", None) is not None or getattr(b, "guide", None) is not None:
        _assert_same(a.guide, b.guide)


def test_features_and_planes_split_and_concatenate_per_sample(small, tiny):
    for editor in (small, tiny):
        x, cameras = _frames(editor, 3, seed=11)
        features = editor.encode_features(x, cameras)
        planes = editor.fuse(features, [editor.encode_prompt(text="elf"), None, None])
        for whole in (features, planes):
            parts = whole.split()
            assert [p.batch for p in parts] == [1, 1, 1]
            _assert_same(type(whole).cat(parts), whole)
            _assert_same(type(whole).cat(whole.split([2, 1])), whole)
            with pytest.raises(ValueError, match="add up"):
                whole.split([1, 1])
    # paste-mode requests: no geometry (planes.tensor None); one stream edits, one does not
    x, cameras = _frames(small, 2)
    bare = small.encode_features(x, cameras, geometry=False).split()
    assert bare[0].high is None and Features.cat(bare).high is None
    edited = small.fuse(bare[0], small.encode_prompt(text="elf"))
    plain = small.fuse(bare[1], None)
    assert edited.tensor is None and plain.guide.edit is None
    joined = Planes.cat([edited, plain])
    assert joined.tensor is None and (joined.guide.edit[1] == 0).all()
    torch.testing.assert_close(small.render_image(joined, cameras)[1:], x[1:], rtol=0, atol=0)
    _assert_same(joined.split()[0], edited)
    assert Guide.cat([plain.guide, plain.guide]).edit is None
    with pytest.raises(ValueError, match="with and without"):
        Features.cat([bare[0], small.encode_features(x[:1], cameras[0])])


@pytest.mark.slow
def test_compiled_editor_serves_any_batch_without_recompiling(tiny, single_thread):
    """`compile(batched=True)`: batch 1 and one dynamic-batch graph per module; batches of 3 and 5
    (never seen in the warm-up) then run without a recompile and match eager."""
    import torch._dynamo

    compiled = _load("tiny").compile(threads=1, batched=True)
    assert compiled.net.renderer._compiled_call_impl is not None
    prompts = _mixed_prompts(tiny)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for batch in (3, 5, 1):
            x, cameras = _frames(tiny, batch, seed=batch)
            chosen = [prompts[i % len(prompts)] for i in range(batch)]
            novel = [Camera.from_yaw_pitch(0.3, 0.1)] * batch
            fast = compiled.fuse(compiled.encode_features(x, cameras), chosen)
            ref = tiny.fuse(tiny.encode_features(x, cameras), chosen)
            torch.testing.assert_close(fast.tensor, ref.tensor, rtol=1e-4, atol=1e-5 * ref.tensor.std().item())
            torch.testing.assert_close(compiled.render_image(fast, novel), tiny.render_image(ref, novel), rtol=1e-4, atol=RENDER_ATOL)

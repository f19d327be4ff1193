"""The appearance route (`small` preset): re-projection of the input view, visibility, the prompt's
colour-transform field, and the editor/training paths that use them."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from live3dpe.model.appearance import AppearanceEditor, apply_colour_transform, face_region, reference_colour
from live3dpe.model.cameras import Camera, generate_rays
from live3dpe.model.config import SMALL, TINY, ModelConfig
from live3dpe.model.editor import Editor
from live3dpe.model.guide import guided_image, reproject, reproject_input, visibility
from live3dpe.model.image_prompt import preprocess_reference
from live3dpe.model.types import Guide, PromptEmbedding

S = 16


def _guide(size: int = S, yaw: float = 0.2, edit=None) -> Guide:
    image = torch.linspace(-1, 1, 3 * size * size).reshape(1, 3, size, size)
    return Guide(image, Camera.from_yaw_pitch(yaw, 0.05).label, edit)


def test_a_point_on_the_input_views_surface_samples_exactly_its_own_pixel():
    label = Camera.from_yaw_pitch(0.3, -0.1).label
    origins, dirs = generate_rays(label, S)
    depth = 2.4 + 0.3 * torch.rand(1, S * S, 1)  # any surface along the input rays
    grid, distance = reproject(origins + depth * dirs, label)
    centres = (torch.arange(S) + 0.5) / S * 2 - 1
    yy, xx = torch.meshgrid(centres, centres, indexing="ij")
    assert torch.allclose(grid[0], torch.stack([xx, yy], -1).reshape(-1, 2), atol=1e-4)
    assert torch.allclose(distance[0], depth[0, :, 0], atol=1e-4)
    image = torch.rand(1, 3, S, S)
    sampled = torch.nn.functional.grid_sample(image, grid.reshape(1, S, S, 2), align_corners=False)
    assert torch.allclose(sampled, image, atol=1e-4)


def test_an_occluded_point_gets_no_visibility_and_a_surface_point_full_visibility():
    surface = torch.full((4,), 2.5)
    assert visibility(torch.tensor([2.5, 2.49, 2.7, 3.0]), surface).tolist() == pytest.approx([1, 1, 0, 0], abs=0.05)


def test_a_point_beyond_the_crop_extends_the_crops_edge_colour_without_its_texture():
    """No colour is invented where the photo ends, and a textured edge does not smear into streaks."""
    size = 64
    label = Camera.from_yaw_pitch(0.0, 0.0).label
    rows = torch.linspace(-0.8, 0.8, size)[:, None].expand(size, size)
    checker = 0.5 * ((torch.arange(size)[:, None] + torch.arange(size)[None]) % 2 * 2 - 1)
    image = (rows + checker).expand(1, 3, size, size).contiguous()
    guide = Guide(image, label, None)
    view = Camera.from_yaw_pitch(0.5, 0.0).label  # turned far enough that one side leaves the crop
    depth = torch.full((1, 1, size, size), 3.2)  # a backdrop behind the head's pivot: parallax moves it past the edge
    colour, vis, grid = reproject_input(depth, view, guide, input_depth=torch.full((1, 1, size, size), 3.3))
    beyond = (grid.abs() > 1).any(-1)
    assert beyond.float().mean() > 0.05 and (vis[:, 0][beyond] > 0.99).all()
    row_colour = ((grid[..., 1] + 1) / 2 * 1.6 - 0.8).clamp(-0.8, 0.8)  # the gradient at the row it lands on
    error = (colour[0, 0] - row_colour[0])[beyond[0]].abs()
    assert error.mean() < 0.1 and error.max() < 0.25  # the checkerboard (±0.5) is gone, the gradient kept
    inside = ~beyond[0]
    sharp = torch.nn.functional.grid_sample(image, grid, padding_mode="border", align_corners=False)[0, 0]
    assert torch.allclose(colour[0, 0][inside], sharp[inside])  # within the crop: the photo itself


def test_novel_view_reads_input_colour_where_visible_and_the_neural_colour_where_occluded():
    guide = _guide(yaw=0.0)
    label = Camera.from_yaw_pitch(0.25, 0.0).label
    neural = torch.full((1, 3, 8, 8), 0.5)
    depth = torch.full((1, 1, 4, 4), 2.7)
    seen, vis = guided_image(neural, depth, label, guide, input_depth=torch.full((1, 1, 4, 4), 2.7))
    hidden, vis_hidden = guided_image(neural, depth, label, guide, input_depth=torch.full((1, 1, 4, 4), 2.0))
    assert seen.shape == (1, 3, S, S) and vis.mean() > 0.5  # a sphere of depth 2.7 around the new camera is partly behind
    assert vis_hidden.max() < 0.01 and torch.allclose(hidden, torch.full_like(hidden, 0.5), atol=0.01)
    assert (seen - hidden).abs().mean() > 0.1


def test_input_view_is_the_guide_image_with_its_edit_applied():
    edit = torch.zeros(1, 12, 4, 4)
    edit[:, 9] = 0.25  # red + 0.25 everywhere
    guide = _guide(edit=edit)
    out, vis = guided_image(torch.zeros(1, 3, 8, 8), torch.zeros(1, 1, 4, 4), guide.label, guide, None)
    assert torch.equal(vis, torch.ones_like(vis))
    assert torch.allclose(out[:, 0], guide.image[:, 0] + 0.25) and torch.equal(out[:, 1:], guide.image[:, 1:])


def test_colour_transform_zero_field_is_identity_and_matrix_acts_per_pixel():
    rgb = torch.rand(2, 3, 5, 5) * 2 - 1
    assert torch.equal(apply_colour_transform(rgb, torch.zeros(2, 12, 5, 5)), rgb)
    edit = torch.zeros(2, 12, 5, 5)
    edit[:, 0] = -1.0  # A[0, 0] = -1: the red channel is removed, green and blue untouched
    out = apply_colour_transform(rgb, edit)
    assert torch.allclose(out[:, 0], torch.zeros_like(out[:, 0])) and torch.equal(out[:, 1:], rgb[:, 1:])
    # any field: rgb + A rgb + b with A the row-major 3x3 of channels 0-8, b channels 9-11
    edit = torch.randn(2, 12, 5, 5, generator=torch.Generator().manual_seed(0))
    a = edit[:, :9].unflatten(1, (3, 3))
    expected = rgb + torch.einsum("bijhw,bjhw->bihw", a, rgb) + edit[:, 9:]
    torch.testing.assert_close(apply_colour_transform(rgb, edit), expected)


def test_reference_colour_reads_the_face_not_the_background():
    ref = np.zeros((112, 112, 3), np.uint8)
    ref[face_region(112).numpy()] = (255, 215, 0)  # a golden face on black
    stats = reference_colour(preprocess_reference(ref, 112))[0]
    assert stats[:3].tolist() == pytest.approx([1.0, 215 / 127.5 - 1, -1.0], abs=0.03)
    assert stats[3:6].max() < 0.05 and stats[6] == 1


def test_appearance_editor_starts_as_identity_and_depends_on_the_prompt_once_trained():
    cfg = SMALL
    net = AppearanceEditor(cfg)
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    tokens = torch.randn(1, 5, cfg.ref_dim)
    assert net(image, tokens).abs().max() == 0  # zero-initialised: no edit before training
    torch.nn.init.normal_(net.head.weight, std=0.1)
    torch.nn.init.normal_(net.film.weight, std=0.1)
    a, b = net(image, tokens), net(image, torch.randn(1, 7, cfg.ref_dim))
    assert a.shape == (2, 12, 16, 16) and (a - b).abs().mean() > 1e-3


def test_config_keeps_the_two_appearance_fields_together():
    with pytest.raises(ValueError, match="go together"):
        dataclasses.replace(TINY, appearance_channels=8)
    with pytest.raises(ValueError, match="below input_resolution"):
        dataclasses.replace(TINY, appearance_channels=8, guide_resolution=64)
    assert ModelConfig.from_dict(SMALL.to_dict()) == SMALL
    assert not TINY.appearance_route and SMALL.appearance_route


@pytest.fixture(scope="module")
def small_editor() -> Editor:
    with pytest.warns(RuntimeWarning, match="RANDOM"):
        return Editor.load("small")


def test_editor_reproduces_the_crop_at_its_own_camera_and_reprojects_it_elsewhere(small_editor):
    ed = small_editor
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (ed.crop_resolution, ed.crop_resolution, 3), dtype=np.uint8)
    camera = Camera.from_yaw_pitch(0.15, 0.05)
    planes = ed.encode(ed.preprocess(crop), None, camera)
    assert planes.guide is not None and planes.guide.edit is None
    same = ed.postprocess(ed.render(planes, camera).image)[0]
    assert same.shape == crop.shape and np.array_equal(same, crop)
    other = ed.postprocess(ed.render(planes, Camera.from_yaw_pitch(math.radians(-20), 0.0)).image)[0]
    assert other.shape == crop.shape and not np.array_equal(other, crop)


def test_editor_takes_larger_crops_on_the_appearance_route_only(small_editor):
    big = np.full((512, 512, 3), 90, np.uint8)
    assert small_editor.preprocess(big).shape == (1, 3, 512, 512)
    assert small_editor.crop_resolution_for(512) == 512
    with pytest.raises(ValueError, match="at least 128x128"):
        small_editor.preprocess(np.zeros((64, 64, 3), np.uint8))
    with pytest.warns(RuntimeWarning):
        tiny = Editor.load("tiny")
    assert tiny.crop_resolution_for(512) == tiny.input_resolution
    with pytest.raises(ValueError, match="128x128"):
        tiny.preprocess(big)


def test_a_prompt_becomes_the_guides_edit_and_an_image_prompt_carries_its_colour(small_editor):
    ed = small_editor
    crop = np.full((ed.crop_resolution, ed.crop_resolution, 3), 120, np.uint8)
    prompt = ed.encode_prompt(image=np.full((64, 64, 3), 200, np.uint8))
    assert prompt.colour is not None and prompt.colour.shape == (1, 7)
    planes = ed.encode(ed.preprocess(crop), prompt, Camera.frontal())
    assert planes.guide.edit.shape == (1, 12, ed.input_resolution // 4, ed.input_resolution // 4)
    text = PromptEmbedding(torch.zeros(1, 3, ed.config.ref_dim), "text", "t")
    with pytest.raises(ValueError, match="appearance editor"):
        ed.net.encoder(ed.preprocess(np.zeros((128, 128, 3), np.uint8)), text.tokens)


def test_render_image_skips_volume_rendering_only_at_the_input_camera(small_editor, monkeypatch):
    ed = small_editor
    crop = np.random.default_rng(1).integers(0, 256, (ed.crop_resolution, ed.crop_resolution, 3), dtype=np.uint8)
    camera = Camera.from_yaw_pitch(0.1, 0.0)
    planes = ed.encode(ed.preprocess(crop), None, camera)
    guide = dataclasses.replace(planes.guide, edit=torch.randn(1, 12, 8, 8) * 0.1)  # the shortcut must apply it
    planes = dataclasses.replace(planes, guide=guide)
    full = ed.render(planes, camera).image
    volume_renders = []
    real = ed.net.renderer._render
    monkeypatch.setattr(ed.net.renderer, "_render", lambda *a, **k: volume_renders.append(1) or real(*a, **k))
    fast = ed.render_image(planes, camera)
    assert volume_renders == [] and torch.allclose(fast, full, atol=1e-6)
    novel = Camera.from_yaw_pitch(-0.3, 0.0)
    assert torch.equal(ed.render_image(planes, novel), ed.render(planes, novel).image) and volume_renders


def test_paste_mode_planes_skip_the_encoders_and_show_only_the_input_camera(small_editor):
    ed = small_editor
    crop = np.random.default_rng(2).integers(0, 256, (ed.crop_resolution, ed.crop_resolution, 3), dtype=np.uint8)
    camera = Camera.from_yaw_pitch(-0.1, 0.05)
    prompt = ed.encode_prompt(image=np.full((64, 64, 3), 200, np.uint8))
    x = ed.preprocess(crop)
    full = ed.fuse(ed.encode_features(x, camera), prompt)
    light = ed.fuse(ed.encode_features(x, camera, geometry=False), prompt)
    assert light.tensor is None and full.tensor is not None
    assert torch.equal(ed.render_image(light, camera), ed.render_image(full, camera))
    with pytest.raises(ValueError, match="no geometry"):
        ed.render_image(light, Camera.from_yaw_pitch(0.3, 0.0))
    with pytest.warns(RuntimeWarning):
        tiny = Editor.load("tiny")
    with pytest.raises(ValueError, match="needs the geometry"):
        tiny.encode_features(tiny.preprocess(np.zeros((128, 128, 3), np.uint8)), geometry=False)

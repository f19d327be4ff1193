"""EditorNet and the encoders at `tiny` size: shapes, path splits, gradients, input errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from live3dpe.model.cameras import Camera
from live3dpe.model.config import TINY
from live3dpe.model.encoders import append_pixel_coordinates
from live3dpe.model.image_prompt import preprocess_reference
from live3dpe.model.network import EditorNet

S = TINY.input_resolution


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return EditorNet(TINY).eval()


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(2, 3, S, S, generator=g) * 2 - 1
    ref = torch.randn(2, 3, TINY.ref_resolution, TINY.ref_resolution, generator=g)
    return image, ref


def test_shapes(net, inputs):
    image, ref = inputs
    with torch.no_grad():
        tokens = net.image_prompt(ref)
        out = net.encoder.trace(image, tokens)
    grid = TINY.ref_resolution // TINY.ref_patch
    assert tokens.shape == (2, 1 + grid * grid, TINY.ref_dim)
    assert out["elow_backbone"].shape == (2, TINY.elow_channels[1], S // 8, S // 8)
    assert out["elow_aspp"].shape == (2, TINY.aspp_channels, S // 8, S // 8)
    assert out["f_feature"].shape == (2, TINY.f_out_channels, S // 4, S // 4)
    assert out["high_feature"].shape == out["cross_attn_out"].shape == (2, TINY.ehigh_channels[1], S // 4, S // 4)
    assert out["ref_query_tokens"].shape == (2, (S // 16) ** 2, TINY.ref_dim)
    assert out["triplane"].shape == (2, TINY.triplane_channels, TINY.triplane_resolution, TINY.triplane_resolution)


def test_prompt_changes_triplane_and_reconstruction_ignores_it(net, inputs):
    image, ref = inputs
    with torch.no_grad():
        features = net.encoder.encode_features(image[:1])
        a = net.encoder.fuse(features, net.image_prompt(ref[:1]))
        b = net.encoder.fuse(features, net.image_prompt(ref[1:]))
        rec = net.encoder.fuse(features, None)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a, rec)


def test_five_channel_input_is_used_as_given(net, inputs):
    image = inputs[0][:1]
    x5 = append_pixel_coordinates(image)
    assert torch.equal(x5[0, 3, 5, :], torch.full((S,), 5.0)) and torch.equal(x5[0, 4, :, 7], torch.full((S,), 7.0))
    with torch.no_grad():
        torch.testing.assert_close(net.encoder(x5), net.encoder(image), rtol=0, atol=0)
        shifted = x5.clone()
        shifted[:, 3:] += 1
        assert not torch.allclose(net.encoder(shifted), net.encoder(image))


def test_single_prompt_broadcasts_over_the_batch(net, inputs):
    image, ref = inputs
    with torch.no_grad():
        tokens = net.image_prompt(ref[:1])
        batched = net.encoder(image, tokens)
        single = net.encoder(image[1:], tokens)
    torch.testing.assert_close(batched[1:], single, rtol=1e-5, atol=1e-6)


def test_dropout_only_acts_in_training(net, inputs):
    image = inputs[0][:1]
    with torch.no_grad():
        first, second = net.encoder(image), net.encoder(image)
        net.encoder.train()
        try:
            noisy = net.encoder(image)
        finally:
            net.encoder.eval()
    assert torch.equal(first, second)
    assert not torch.allclose(first, noisy)


def test_render_composition(net, inputs):
    image, _ = inputs
    camera = Camera.frontal(batch=1)
    with torch.no_grad():
        out = net(image[:1], camera.label, deterministic=True)
    r = TINY.render
    assert out.image.shape == (1, 3, r.output_resolution, r.output_resolution)
    assert out.depth.shape == (1, 1, r.neural_resolution, r.neural_resolution)
    assert torch.isfinite(out.image).all()


def _grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters() if p.requires_grad]


def test_reconstruction_gradients_skip_the_prompt_side(inputs):
    torch.manual_seed(0)
    model = EditorNet(TINY)
    image = inputs[0][:1]
    model.encoder(image, None).square().mean().backward()
    assert all(g is None for g in _grads(model.image_prompt) + _grads(model.encoder.cross_attention))
    for part in (model.encoder.elow, model.encoder.ehigh, model.encoder.fusion):
        assert all(g is not None and g.abs().sum() > 0 for g in _grads(part))


def test_editing_gradients_reach_the_prompt_side(inputs):
    torch.manual_seed(0)
    model = EditorNet(TINY)
    image, ref = inputs[0][:1], inputs[1][:1]
    features = {k: v.detach() for k, v in model.encoder.encode_features(image).items()}
    model.encoder.fuse(features, model.image_prompt(ref)).square().mean().backward()
    for part in (model.image_prompt, model.encoder.cross_attention, model.encoder.fusion):
        assert all(g is not None and g.abs().sum() > 0 for g in _grads(part))
    assert all(g is None for g in _grads(model.encoder.elow) + _grads(model.encoder.ehigh))
    assert model.image_prompt.pos_embed.grad is None and not model.image_prompt.pos_embed.requires_grad


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(1, 3, S // 2, S // 2), "must be 128x128"),
        (torch.zeros(1, 4, S, S), "3 or 5 channels"),
        (torch.zeros(3, S, S), r"\[B, C, H, W\]"),
        (torch.full((1, 3, S, S), float("nan")), "NaN"),
        (torch.zeros(1, 3, S, S, dtype=torch.uint8), "floating-point"),
    ],
)
def test_bad_image_is_rejected(net, bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        net.encoder(bad)


def test_bad_prompt_tokens_are_rejected(net, inputs):
    image, _ = inputs
    with pytest.raises(ValueError, match="prompt_tokens must be"):
        net.encoder(image, torch.zeros(2, 5, TINY.ref_dim + 1))
    with pytest.raises(ValueError, match="prompt batch 3"):
        net.encoder(image, torch.zeros(3, 5, TINY.ref_dim))


def test_bad_reference_is_rejected(net):
    with pytest.raises(ValueError, match="must be 112x112"):
        net.image_prompt(torch.zeros(1, 3, 224, 224))
    with pytest.raises(TypeError, match="uint8"):
        preprocess_reference(np.zeros((64, 64, 3), np.float32), 112)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        preprocess_reference(np.zeros((64, 64), np.uint8), 112)


def test_reference_preprocessing_resizes_and_normalises():
    gray = np.full((2, 300, 200, 3), 128, np.uint8)
    out = preprocess_reference(gray, 112)
    assert out.shape == (2, 3, 112, 112)
    expected = (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), expected, rtol=0, atol=1e-5)
    assert float(out.std(dim=(0, 2, 3)).max()) < 1e-5


@pytest.mark.parametrize("size", [8, 16, 40])
def test_aspp_dilations_past_the_map_equal_the_plain_dilated_conv(size):
    """The shortcut for rates that only ever hit zero padding must not change a single value."""
    from live3dpe.model.encoders import ASPP

    torch.manual_seed(0)
    aspp = ASPP(8, 6, (3, 12, 24))
    x = torch.randn(2, 8, size, size)
    with torch.no_grad():
        for conv in aspp.atrous:
            torch.testing.assert_close(aspp._atrous(conv, x), conv(x), rtol=1e-5, atol=1e-6)

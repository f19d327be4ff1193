"""Optimised inference paths equal the reference (eager, modulated) path on the CPU.

The folded super-resolution is checked against the modulated one in test_renderer.py; here
torch.compile (static shapes, as used for the GPU latency runs) is checked against eager.
"""
import pytest
import torch

from live3dpe.model.config import TINY
from live3dpe.model.network import EditorNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    n = EditorNet(TINY).eval()
    n.renderer.fold_superres()
    return n


@pytest.mark.slow
def test_compiled_encoder_equals_eager(net):
    x = torch.rand(1, 3, TINY.input_resolution, TINY.input_resolution) * 2 - 1
    tokens = torch.randn(1, 10, TINY.ref_dim)
    compiled = torch.compile(net.encoder, dynamic=False)
    with torch.inference_mode():
        eager, fast = net.encoder(x, tokens), compiled(x, tokens)
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5 * eager.std().item())


@pytest.mark.slow
def test_compiled_folded_superres_equals_modulated_eager(net):
    features = torch.randn(1, TINY.plane_channels, TINY.render.neural_resolution, TINY.render.neural_resolution)
    style = net.renderer.const.reshape(1, -1)
    compiled = torch.compile(net.renderer.superres_folded, dynamic=False)
    with torch.inference_mode():
        reference, fast = net.renderer.superres(features, style), compiled(features)
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5 * reference.std().item())

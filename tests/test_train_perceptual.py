"""Optional LPIPS: loads from a local file with the `lpips` key names, or is skipped with a note."""
from __future__ import annotations

import logging

import torch
from safetensors.torch import save_file

from live3dpe.train.losses import image_loss
from live3dpe.train.perceptual import _ALEX, _SLICE_INDEX, LPIPS, load_lpips


def _fake_weights(path):
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, ((cin, cout, ks, _, _), (slice_no, idx)) in enumerate(zip(_ALEX, _SLICE_INDEX)):
        state[f"net.slice{slice_no}.{idx}.weight"] = torch.randn(cout, cin, ks, ks, generator=g) / (cin * ks * ks) ** 0.5
        state[f"net.slice{slice_no}.{idx}.bias"] = torch.zeros(cout)
        state[f"lin{k}.model.1.weight"] = torch.rand(1, cout, 1, 1, generator=g)
    save_file(state, str(path))
    return path


def test_lpips_loads_local_weights_and_measures_difference(tmp_path):
    net = load_lpips(_fake_weights(tmp_path / "lpips.safetensors"))
    assert isinstance(net, LPIPS)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.allclose(net(x, x), torch.zeros(2), atol=1e-6)
    d = net(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert image_loss(y, x, perceptual=net) > image_loss(y, x)
    assert not any(p.requires_grad for p in net.parameters())


def test_missing_lpips_is_a_logged_note(caplog):
    with caplog.at_level(logging.INFO):
        assert load_lpips(None) is None
    assert "SSIM" in caplog.text

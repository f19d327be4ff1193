"""Reference-following batches (`data.RecolourSource`): the target is the input through the same
colour transform that made the reference, so the edit can only be read from the reference."""
from __future__ import annotations

import math

import torch

from live3dpe.model.image_prompt import preprocess_reference
from live3dpe.train.augment import apply_recolour, random_recolour
from live3dpe.train.data import RecolourSource


class _Plain:
    """A stand-in source: plain people as random images, and a marker batch of its own."""

    def __init__(self, n: int = 5, size: int = 16) -> None:
        g = torch.Generator().manual_seed(1)
        self.image = torch.rand(n, 3, size, size, generator=g) * 1.6 - 0.8
        self.label = torch.arange(n, dtype=torch.float32)[:, None].expand(n, 25).clone()
        self.own = object()

    def __len__(self) -> int:
        return self.image.shape[0]

    def edit_batch(self, batch: int, generator: torch.Generator):
        return self.own


def test_recolour_keeps_grey_grey_and_is_the_identity_at_strength_zero():
    matrix, offset = random_recolour(64, 1.0, torch.Generator().manual_seed(0))
    grey = torch.ones(3) / math.sqrt(3)
    mapped = matrix @ grey
    gain = mapped.norm(dim=1, keepdim=True)
    assert torch.allclose(mapped / gain, grey.expand(64, 3), atol=1e-5)  # hue and saturation leave grey alone
    assert not torch.allclose(matrix, torch.eye(3).expand(64, 3, 3), atol=0.05)
    m0, c0 = random_recolour(8, 0.0, torch.Generator().manual_seed(0))
    assert torch.allclose(m0, torch.eye(3).expand(8, 3, 3), atol=1e-6) and torch.equal(c0, torch.zeros(8, 3))


def test_recolour_reaches_the_lightness_shifts_of_real_references():
    """Statues and paintings are 20-50 L* units darker or lighter than the person: the transforms
    must move a skin tone's lightness that far, both ways, not only a few units."""
    matrix, offset = random_recolour(512, 1.0, torch.Generator().manual_seed(0))
    skin = torch.tensor([0.55, 0.2, 0.05])  # a mid skin tone in [-1, 1] RGB
    shift = ((matrix @ skin + offset).clamp(-1, 1) - skin).mean(1) * 50  # ~L* units (grey axis)
    assert shift.min() < -25 and shift.max() > 25
    assert (shift.abs() > 15).float().mean() > 0.3


def test_recolour_batch_targets_the_input_through_the_references_transform():
    plain = _Plain()
    source = RecolourSource(plain, prob=1.0, ref_resolution=16)
    g = torch.Generator().manual_seed(3)
    batch = source.edit_batch(3, g)
    assert batch.prompt.kind == "image" and batch.prompt.reference.shape == (1, 3, 16, 16)
    # the same draws again give the transform that was used; it explains target and reference
    g = torch.Generator().manual_seed(3)
    torch.rand(1, generator=g)
    idx = torch.randint(len(plain), (4,), generator=g)
    matrix, offset = random_recolour(1, 1.0, g)
    assert torch.equal(batch.image, plain.image[idx[:3]]) and torch.equal(batch.label, plain.label[idx[:3]])
    assert torch.allclose(batch.edited, apply_recolour(batch.image, matrix.expand(3, -1, -1), offset.expand(3, -1)))
    assert (batch.edited - batch.image).abs().mean() > 0.05
    ref = apply_recolour(plain.image[idx[3:]], matrix, offset)
    expected = preprocess_reference(((ref + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1), 16)
    assert torch.allclose(batch.prompt.reference, expected)


def test_recolour_share_follows_prob():
    plain = _Plain()
    g = torch.Generator().manual_seed(0)
    never = RecolourSource(plain, prob=0.0, ref_resolution=16)
    assert all(never.edit_batch(2, g) is plain.own for _ in range(20))
    some = RecolourSource(plain, prob=0.25, ref_resolution=16)
    share = sum(some.edit_batch(2, g) is not plain.own for _ in range(400)) / 400
    assert 0.15 < share < 0.35

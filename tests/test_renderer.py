"""Behaviour of the renderer: samplers, analytic geometry, determinism, folding, gradients, errors."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor

from live3dpe.model.cameras import Camera, generate_rays
from live3dpe.model.config import PAPER, TINY
from live3dpe.model.ray_sampler import importance_depths, sample_pdf, stratified_depths
from live3dpe.model.raymarcher import median_depth, raymarch
from live3dpe.model.renderer import TriplaneRenderer, render_rays
from live3dpe.model.superres import FoldedSuperResolution, SuperResolution
from live3dpe.model.types import Planes

R = TINY.render
# enough samples per ray for the analytic sphere check's tolerances (the tiny preset uses 12 + 12)
R_DENSE = dataclasses.replace(R, coarse_samples=24, fine_samples=24)


@pytest.fixture(scope="module")
def renderer() -> TriplaneRenderer:
    torch.manual_seed(0)
    return TriplaneRenderer(TINY).eval()


def random_planes(batch: int = 1, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TINY.triplane_channels, 32, 32, generator=g) * 0.5


def cameras(batch: int = 1) -> torch.Tensor:
    return Camera.from_yaw_pitch(torch.linspace(-0.3, 0.3, batch), torch.zeros(batch)).label


# --- samplers -----------------------------------------------------------------------------------


def test_stratified_depths_stay_in_their_strata_and_det_uses_midpoints():
    o = torch.zeros(2, 7, 3)
    delta = (R.ray_end - R.ray_start) / (R.coarse_samples - 1)
    edges = torch.linspace(R.ray_start, R.ray_end, R.coarse_samples)[None, None, :, None]
    t = stratified_depths(o, R.ray_start, R.ray_end, R.coarse_samples, generator=torch.Generator().manual_seed(0))
    assert t.shape == (2, 7, R.coarse_samples, 1)
    assert ((t >= edges) & (t < edges + delta)).all()
    assert t.std(dim=(0, 1)).min() > 0  # jittered independently per ray
    det = stratified_depths(o, R.ray_start, R.ray_end, R.coarse_samples, deterministic=True)
    torch.testing.assert_close(det, (edges + delta / 2).expand_as(det))


def test_sample_pdf_follows_the_weights():
    bins = torch.linspace(0, 1, 11).expand(3, 11).contiguous()
    uniform = sample_pdf(bins, torch.ones(3, 10), 5, deterministic=True)
    torch.testing.assert_close(uniform, torch.linspace(0, 1, 5).expand(3, 5), atol=1e-6, rtol=0)
    peaked = torch.zeros(3, 10)
    peaked[:, 6] = 1.0
    t = sample_pdf(bins, peaked, 200, generator=torch.Generator().manual_seed(0))
    assert ((t >= 0.6) & (t <= 0.7)).float().mean() > 0.99


def test_importance_depths_concentrate_on_coarse_weight_peak():
    depths = stratified_depths(torch.zeros(1, 4, 3), 2.0, 3.0, 48, deterministic=True)
    weights = torch.zeros(1, 4, 47, 1)
    weights[:, :, 20] = 1.0
    fine = importance_depths(depths, weights, 64, generator=torch.Generator().manual_seed(0))
    assert fine.shape == (1, 4, 64, 1) and not fine.requires_grad
    lo, hi = depths[0, 0, 18, 0], depths[0, 0, 23, 0]
    assert ((fine > lo) & (fine < hi)).float().mean() > 0.8  # +0.01 floor leaves ~15% elsewhere


# --- analytic geometry --------------------------------------------------------------------------


def sphere_field(radius: float, color: float):
    """Opaque sphere at the origin: sigma logit 60 inside (density 59), -30 outside."""

    def field(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inside = points.norm(dim=-1, keepdim=True) < radius
        sigma = torch.where(inside, torch.full_like(points[..., :1], 60.0), torch.full_like(points[..., :1], -30.0))
        return torch.full_like(points, color), sigma

    return field


@pytest.mark.parametrize("deterministic", [True, False])
def test_sphere_depth_matches_ray_intersection(deterministic):
    radius = 0.25
    origins, dirs = generate_rays(Camera.from_yaw_pitch(torch.tensor([0.0, 0.4]), torch.tensor([0.0, -0.2])).label, 16)
    rgb, depth, weights, median = render_rays(
        sphere_field(radius, 0.75), origins, dirs, R_DENSE, deterministic=deterministic,
        generator=torch.Generator().manual_seed(3), max_points=5000,
    )  # fmt: skip
    b = (origins * dirs).sum(-1)
    disc = b**2 - (origins.square().sum(-1) - radius**2)
    hit = disc > 0.005  # skip grazing rays, whose chord is shorter than a sample spacing
    miss = disc < 0
    assert hit.sum() > 20 and miss.sum() > 20
    t_hit = -b - disc.clamp(min=0).sqrt()
    spacing = (R_DENSE.ray_end - R_DENSE.ray_start) / (R_DENSE.coarse_samples - 1)
    assert (depth[..., 0][hit] - t_hit[hit]).abs().max() < spacing
    assert (median[..., 0][hit] - t_hit[hit]).abs().max() < spacing
    opacity = weights.sum((2, 3))
    assert (opacity[hit] > 0.99).all()
    assert opacity[miss].max() < 1e-6
    torch.testing.assert_close(rgb[hit], torch.full_like(rgb[hit], 0.5), atol=0.01, rtol=0)  # 0.75*2-1
    torch.testing.assert_close(rgb[miss], torch.full_like(rgb[miss], -1.0), atol=1e-5, rtol=0)


def _fog_then_wall(wall: float, samples: int = 64) -> tuple[Tensor, Tensor]:
    """One ray: faint fog over [2.3, 2.5] (about a third of the weight), an opaque wall at `wall`."""
    depths = torch.linspace(2.25, 3.3, samples).reshape(1, 1, samples, 1)
    sigma = torch.where((depths > 2.3) & (depths < 2.5), torch.tensor(3.0), torch.tensor(-60.0))
    return torch.where(depths >= wall, torch.tensor(80.0), sigma), depths


def test_median_depth_finds_the_surface_behind_fog():
    sigma, depths = _fog_then_wall(2.8)
    _, expected, weights = raymarch(torch.zeros(1, 1, 64, 3), sigma, depths)
    assert 0.2 < float(weights[0, 0, :20].sum()) < 0.45  # the fog takes a real share
    assert float(expected) < 2.7  # the weighted mean is pulled towards the fog
    assert abs(float(median_depth(weights, depths)) - 2.8) < 0.02


def test_median_depth_moves_continuously_with_the_surface():
    depths = torch.linspace(2.25, 3.3, 24).reshape(1, 1, 24, 1)  # 0.046 apart
    medians = []
    for surface in torch.linspace(2.7, 2.79, 10).tolist():  # across two sample spacings
        sigma = 60 * (depths - surface)  # density rises through the surface
        _, _, weights = raymarch(torch.zeros(1, 1, 24, 3), sigma, depths)
        medians.append(float(median_depth(weights, depths)))
    steps = torch.tensor(medians).diff()
    assert (steps > 0).all() and steps.max() < 3 * steps.min()  # follows it, no jumps from sample to sample


def test_depth_clamp_is_global_and_empty_rays_go_to_far_end():
    depths = torch.linspace(2.0, 3.0, 8).reshape(1, 1, 8, 1).repeat(1, 2, 1, 1)
    depths[:, 1] += 0.5  # second ray spans [2.5, 3.5]
    sigma = torch.full((1, 2, 8, 1), -200.0)  # density underflows to exactly 0
    _, depth, weights = raymarch(torch.zeros(1, 2, 8, 3), sigma, depths)
    assert (weights == 0).all()
    torch.testing.assert_close(depth, torch.full((1, 2, 1), 3.5))  # NaN -> inf -> global max


# --- full renderer ------------------------------------------------------------------------------


def test_output_shapes_and_planes_wrapper(renderer):
    planes = random_planes(2)
    with torch.no_grad():
        out = renderer(Planes(planes), cameras(2), deterministic=True, return_weights=True)
        low = renderer(planes, cameras(2), deterministic=True, neural_resolution=16)
    n, s = R.neural_resolution, R.output_resolution
    assert out.image.shape == (2, 3, s, s) and out.image_raw.shape == (2, 3, n, n)
    assert out.depth.shape == (2, 1, n, n) and out.features.shape == (2, TINY.plane_channels, n, n)
    assert out.weights.shape == (2, n * n, R.coarse_samples + R.fine_samples - 1, 1)
    torch.testing.assert_close(out.image_raw, out.features[:, :3])
    assert ((out.depth >= R.ray_start) & (out.depth <= R.ray_end + 1.0)).all()
    assert low.image.shape == (2, 3, s, s) and low.depth.shape == (2, 1, 16, 16) and low.weights is None


def test_deterministic_is_bit_identical_and_seeded_stochastic_reproduces(renderer):
    planes, label = random_planes(), cameras()
    with torch.no_grad():
        a = renderer(planes, label, deterministic=True)
        b = renderer(planes, label, deterministic=True)
        s1 = renderer(planes, label, generator=torch.Generator().manual_seed(5))
        s2 = renderer(planes, label, generator=torch.Generator().manual_seed(5))
        s3 = renderer(planes, label, generator=torch.Generator().manual_seed(6))
    for x, y in [(a.image, b.image), (a.depth, b.depth), (s1.image, s2.image), (s1.depth, s2.depth)]:
        assert torch.equal(x, y)
    assert not torch.equal(s1.depth, s3.depth)


def test_chunking_does_not_change_the_render(renderer):
    planes, label = random_planes(2), cameras(2)
    small = TriplaneRenderer(TINY, max_points_per_chunk=3000).eval()
    small.load_state_dict(renderer.state_dict())
    with torch.no_grad():
        a = renderer(planes, label, deterministic=True, return_weights=True)
        b = small(planes, label, deterministic=True, return_weights=True)
    for x, y in [(a.image, b.image), (a.depth, b.depth), (a.weights, b.weights)]:
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg", [TINY, PAPER], ids=["tiny", "paper"])
def test_folded_superres_equals_modulated(cfg):
    torch.manual_seed(0)
    # paper channel widths at a small input size to keep the test fast
    sr = SuperResolution(cfg.plane_channels, cfg.sr_channels, cfg.style_dim, input_resolution=16)
    style = torch.randn(1, 1, cfg.style_dim)
    x = torch.rand(2, cfg.plane_channels, 16, 16) * 2 - 1
    with torch.no_grad():
        ref = sr(x, style.reshape(1, -1))
        folded = FoldedSuperResolution.from_modulated(sr, style)(x)
    assert folded.shape == (2, 3, 64, 64)
    assert (folded - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_renderer_fold_tracks_weight_changes(renderer):
    model = TriplaneRenderer(TINY)
    model.load_state_dict(renderer.state_dict())
    model.eval().fold_superres()
    planes, label = random_planes(), cameras()
    with torch.no_grad():
        folded = model(planes, label, deterministic=True).image
        model.superres_folded, kept = None, model.superres_folded
        modulated = model(planes, label, deterministic=True).image
        model.superres_folded = kept
        torch.testing.assert_close(folded, modulated, atol=1e-5, rtol=1e-5)
        model.train()
        model.const.add_(0.5)  # e.g. an optimizer step
        model.eval()  # refolds
        after = model(planes, label, deterministic=True).image
        model.fold_superres(False)
        torch.testing.assert_close(after, model(planes, label, deterministic=True).image, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after, folded)
    assert set(model.state_dict()) == set(renderer.state_dict())  # the fold is never saved


def test_gradients_reach_planes_decoder_superres_and_const(renderer):
    model = TriplaneRenderer(TINY).train()
    model.load_state_dict(renderer.state_dict())
    model.fold_superres()  # ignored in training mode
    planes = random_planes().requires_grad_(True)
    out = model(planes, cameras(), neural_resolution=16, generator=torch.Generator().manual_seed(0))
    (out.image.square().mean() + out.depth.mean() + out.features.mean()).backward()
    assert planes.grad is not None and planes.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "planes_shape,label_shape,match",
    [
        ((1, 47, 32, 32), (1, 25), "planes must be"),
        ((1, 48, 32), (1, 25), "planes must be"),
        ((1, 48, 32, 16), (1, 25), "planes must be"),
        ((1, 48, 32, 32), (1, 16), "camera label"),
        ((2, 48, 32, 32), (1, 25), "batch mismatch"),
    ],
)
def test_bad_inputs_raise_clear_errors(renderer, planes_shape, label_shape, match):
    with pytest.raises(ValueError, match=match):
        renderer(torch.zeros(planes_shape), torch.zeros(label_shape))


def test_config_and_sampler_errors():
    with pytest.raises(ValueError, match="x4"):
        TriplaneRenderer(dataclasses.replace(TINY, render=dataclasses.replace(R, output_resolution=100)))
    with pytest.raises(ValueError, match="ray_end > ray_start"):
        stratified_depths(torch.zeros(1, 2, 3), 3.0, 2.0, 8)
    with pytest.raises(ValueError, match=r"weights must be \[B, M, S-1, 1\]"):
        importance_depths(torch.zeros(1, 2, 8, 1), torch.zeros(1, 2, 8, 1), 4)
    with pytest.raises(ValueError, match="colors"):
        raymarch(torch.zeros(1, 2, 8, 3), torch.zeros(1, 2, 7, 1), torch.zeros(1, 2, 8, 1))
    with pytest.raises(ValueError, match="style must hold"):
        FoldedSuperResolution.from_modulated(SuperResolution(16, (8, 8), 8, 8), torch.zeros(5))

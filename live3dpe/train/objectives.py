"""The training objectives: stage 1 (3D prior) and stage 2 (3DPE distillation, Eq. 4-7).

Both render several cameras per person in one renderer call (planes repeated per view),
which on a CPU is much cheaper than one call per view.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from live3dpe.model.appearance import apply_colour_transform, reference_colour
from live3dpe.model.types import Guide

from .augment import CameraJitter, jitter_views, photometric_jitter
from .batches import EditBatch, PriorBatch
from .losses import depth_l1, image_loss, resize_like
from .prompting import prompt_tokens
from .protocols import MultiView


def _flat(x: Tensor) -> Tensor:
    """[B, V, ...] -> [B*V, ...] (view-major within each person)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def render_views(
    net: nn.Module, planes: Tensor, labels: Tensor, generator: torch.Generator | None, deterministic: bool = False, guide: Guide | None = None
):
    """planes [B, 3C, R, R], labels [B, V, 25] (+ each person's input view) -> RenderOutput over B*V cameras."""
    v = labels.shape[1]
    if guide is not None:
        guide = guide.repeat_interleave(v)
    return net.renderer(planes.repeat_interleave(v, 0), _flat(labels), deterministic=deterministic, generator=generator, guide=guide)


@dataclass(frozen=True)
class PriorWeights:
    """Stage 1 loss weights: image terms on the SR and raw images, depth L1 on the person."""

    image: float = 1.0
    raw: float = 1.0
    ssim: float = 0.2
    depth: float = 1.0


def prior_loss(
    net: nn.Module, batch: PriorBatch, generator: torch.Generator | None, w: PriorWeights = PriorWeights(), perceptual: nn.Module | None = None
) -> tuple[Tensor, dict[str, float]]:
    """Multi-view reconstruction: E(image) rendered at every view against ground truth (LPIPS on
    the SR image when `perceptual` is given). On the appearance route the image term is on the
    re-projected input (the product's output), so its gradient shapes the geometry through the
    projection; the raw term keeps the triplane's own colour for what the input never saw."""
    planes = net.encoder(batch.image)
    guide = Guide(batch.image, batch.label) if net.cfg.appearance_route else None
    out = render_views(net, planes, batch.view_labels, generator, guide=guide)
    gt = _flat(batch.view_images)
    l_img = image_loss(out.image, resize_like(gt, out.image), w.ssim, perceptual)
    l_raw = image_loss(out.image_raw, resize_like(gt, out.image_raw), w.ssim)
    l_depth = depth_l1(out.depth, _flat(batch.view_depths), _flat(batch.view_masks))
    loss = w.image * l_img + w.raw * l_raw + w.depth * l_depth
    return loss, {"loss": loss.item(), "image": l_img.item(), "raw": l_raw.item(), "depth": l_depth.item()}


class NetPrior:
    """`Prior3D` from a frozen network's reconstruction path (encoder without prompt + renderer)."""

    def __init__(self, net: nn.Module, deterministic: bool = True):
        self.net = net.eval().requires_grad_(False)
        self.deterministic = deterministic

    @torch.no_grad()
    def views(self, image: Tensor, label: Tensor, novel: Tensor) -> MultiView:
        planes = self.net.encoder(image)
        labels = torch.cat([label[:, None], novel], dim=1)
        out = render_views(self.net, planes, labels, None, deterministic=self.deterministic)
        b, v = labels.shape[:2]
        return MultiView(
            images=out.image.reshape(b, v, *out.image.shape[1:]),
            depths=out.depth.reshape(b, v, *out.depth.shape[1:]),
            triplane=planes,
            raw_images=out.image_raw.reshape(b, v, *out.image_raw.shape[1:]),
        )


@dataclass(frozen=True)
class EditWeights:
    """Stage 2 weights (Eq. 7): lambda_2D for the pseudo-label, lambda_tri / lambda_mv / lambda_depth
    for the 3D terms, `keep` for the prompt-free path (it must stay the prior)."""

    l2d: float = 1.0
    tri: float = 1.0
    mv: float = 1.0
    depth: float = 1.0
    ssim: float = 0.2
    keep: float = 1.0
    novel_views: int = 1


def edit_loss(
    student: nn.Module,
    prior: NetPrior,
    batch: EditBatch,
    generator: torch.Generator | None,
    jitter: CameraJitter = CameraJitter(),
    w: EditWeights = EditWeights(),
    perceptual: nn.Module | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """3DPE distillation.

    Eq. 4 (L_2D): the student's render at the input view matches the 2D teacher's edit.
    Eq. 5-6 (L_3D): the student's triplane, and its renders (image, raw, depth) at the input
    and jittered novel views, match the frozen prior applied to the edited pseudo-label.
    Eq. 7: L = l2d * L_2D + L_3D; plus `keep` * |E_t(x, no prompt) - prior(x)|, which keeps the
    prompt-free path a faithful reconstruction since E_t is shared by both.
    """
    novel = torch.stack([jitter_views(batch.label, jitter, generator) for _ in range(w.novel_views)], dim=1)
    target = prior.views(batch.edited, batch.label, novel)
    with torch.no_grad():  # E_low / F / E_high are frozen: their features carry no gradient
        feats = student.encoder.encode_features(batch.image)
    tokens = prompt_tokens(student, batch.prompt)
    planes = student.encoder.fuse(feats, tokens)
    labels = torch.cat([batch.label[:, None], novel], dim=1)
    out = render_views(student, planes, labels, generator)
    b, v = labels.shape[:2]
    img = out.image.reshape(b, v, *out.image.shape[1:])
    raw = out.image_raw.reshape(b, v, *out.image_raw.shape[1:])
    depth = out.depth.reshape(b, v, *out.depth.shape[1:])

    l2d = image_loss(img[:, 0], resize_like(batch.edited, img[:, 0]), w.ssim, perceptual)
    l2d = l2d + image_loss(raw[:, 0], resize_like(batch.edited, raw[:, 0]), w.ssim)
    l_tri = (planes - target.triplane).abs().mean()
    l_mv = (img - target.images).abs().mean() + (raw - target.raw_images).abs().mean()
    if perceptual is not None:
        l_mv = l_mv + perceptual(_flat(img), _flat(target.images)).mean()
    l_depth = (depth - target.depths).abs().mean()
    loss = w.l2d * l2d + w.tri * l_tri + w.mv * l_mv + w.depth * l_depth
    metrics = {"l2d": l2d.item(), "tri": l_tri.item(), "mv": l_mv.item(), "depth": l_depth.item()}
    if w.keep > 0:
        keep_target = prior.net.encoder.fuse(feats, None)
        l_keep = (student.encoder.fuse(feats, None) - keep_target).abs().mean()
        loss = loss + w.keep * l_keep
        metrics["keep"] = l_keep.item()
    metrics["loss"] = loss.item()
    return loss, metrics


@dataclass(frozen=True)
class AppearanceWeights:
    """Stage 2 on the appearance route: the L_2D image term (L1 + SSIM) and the jitter of the
    camera response applied to input and target alike (the synthetic world has one camera; real
    photos have many)."""

    ssim: float = 0.2
    photometric: float = 1.0  # strength of `photometric_jitter`, 0 = none


def appearance_loss(
    net: nn.Module, batch: EditBatch, generator: torch.Generator | None, w: AppearanceWeights = AppearanceWeights()
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 4 on the appearance route: the prompt's colour-transform field applied to the input must
    give the 2D teacher's edit. At the input view this *is* the renderer's output (every ray
    re-projects onto its own pixel), and other views re-project the same edited pixels."""
    image, edited = photometric_jitter(batch.image, batch.edited, w.photometric, generator)
    prompt = batch.prompt
    colour = reference_colour(prompt.reference) if prompt.kind == "image" else None
    field = net.appearance(image, prompt_tokens(net, prompt), colour)
    out = apply_colour_transform(image, F.interpolate(field, size=image.shape[-2:], mode="bilinear", align_corners=False))
    loss = image_loss(out, edited, w.ssim)
    with torch.no_grad():
        unchanged = (image - edited).abs().mean()
    return loss, {"loss": loss.item(), "l1": (out - edited).abs().mean().item(), "no_edit_l1": unchanged.item()}

"""Quality of a trained editor against the synthetic world's ground truth.

Held-out people (a seed stream disjoint from every training set) are rendered at a
frontal input view and at yaw -30 / +30 degrees, unedited and in each style; the network
sees only the input view. Reported PSNR (dB, [0, 1] scale) per view:
  reconstruction: E(x) rendered vs the unedited ground truth;
  editing: E(x, prompt) vs the edited ground truth, for text prompts with a training
  phrasing, a held-out phrasing, and image prompts (renders of other people in the style);
  baselines: no edit (reconstruction vs edited truth) and "2D edit then lift" (the prior
  applied to the ground-truth edited input view, i.e. a perfect 2D editor + our 3D prior).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from live3dpe.model import cameras
from live3dpe.model.appearance import reference_colour
from live3dpe.model.image_prompt import preprocess_reference
from live3dpe.synth.person import sample_person
from live3dpe.synth.render import render
from live3dpe.synth.styles import STYLES

from .batches import Prompt
from .data import TextFeatureCache
from .losses import psnr
from .prompting import prompt_tokens

VIEW_NAMES = ("input", "yaw-30", "yaw+30")
EVAL_SEED = 90_210  # disjoint from dataset seeds (which are small integers)


def _to_model(rgb: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 127.5 - 1


@dataclass
class EvalSet:
    """images [P, V, 3, S, S] per style ('' = unedited), labels [V, 25], a reference per style."""

    labels: Tensor
    truth: dict[str, Tensor]
    references: dict[str, np.ndarray]

    @property
    def inputs(self) -> Tensor:
        return self.truth[""][:, 0]


def make_eval_set(people: int, styles: list[str], resolution: int, seed: int = EVAL_SEED, supersample: int = 1) -> EvalSet:
    """Render the evaluation people (input view frontal, novel views at yaw -30 / +30 degrees)."""
    yaw = torch.tensor([0.0, -math.radians(30), math.radians(30)])
    labels = cameras.Camera.from_yaw_pitch(yaw, torch.zeros(3)).label
    persons = [sample_person(np.random.default_rng([seed, p])) for p in range(people)]
    truth: dict[str, Tensor] = {}
    for style in ["", *styles]:
        imgs = []
        for person in persons:
            who = STYLES[style].apply(person) if style else person
            imgs.append(np.stack([render(who, lab.numpy(), resolution, supersample=supersample).image for lab in labels]))
        truth[style] = _to_model(np.stack(imgs).reshape(-1, resolution, resolution, 3)).reshape(people, 3, 3, resolution, resolution)
    refs = {}
    for k, style in enumerate(styles):
        rng = np.random.default_rng([seed, 1_000 + k])
        ref_label = cameras.Camera.from_yaw_pitch(0.15, 0.0).label[0].numpy()
        refs[style] = render(STYLES[style].apply(sample_person(rng)), ref_label, resolution, supersample=supersample).image
    return EvalSet(labels, truth, refs)


@torch.no_grad()
def edit_views(net: nn.Module, images: Tensor, labels: Tensor, prompt: Prompt | None = None) -> Tensor:
    """Inputs [P, 3, S, S] seen from labels[0] (+ prompt) rendered at V cameras [V, 25] ->
    images [P, V, 3, S', S'] (deterministic), through either route (`EditorNet.planes`)."""
    p, v = images.shape[0], labels.shape[0]
    tokens = colour = None
    if prompt is not None:
        tokens = prompt_tokens(net, prompt)
        colour = reference_colour(prompt.reference) if prompt.kind == "image" and net.appearance is not None else None
    planes, guide = net.planes(net.encoder.encode_features(images), images, labels[:1].expand(p, -1), tokens, colour)
    if guide is not None:
        guide = guide.repeat_interleave(v)
    out = net.renderer(planes.repeat_interleave(v, 0), labels.repeat(p, 1), deterministic=True, guide=guide)
    return out.image.reshape(p, v, *out.image.shape[1:])


def _view_psnr(pred: Tensor, truth: Tensor) -> dict[str, float]:
    """Mean PSNR per view name over people."""
    return {name: float(psnr(pred[:, i], truth[:, i]).mean()) for i, name in enumerate(VIEW_NAMES)}


def _summary(per_view: dict[str, float]) -> dict[str, float]:
    return {"input": per_view["input"], "novel": (per_view["yaw-30"] + per_view["yaw+30"]) / 2}


def edit_psnr(net: nn.Module, es: EvalSet, style: str, prompt: Prompt) -> dict[str, float]:
    """Editing PSNR (input / novel) of one prompt against the style's ground truth."""
    return _summary(_view_psnr(edit_views(net, es.inputs, es.labels, prompt), es.truth[style]))


def image_prompt(es: EvalSet, style: str, ref_resolution: int) -> Prompt:
    return Prompt("image", style, reference=preprocess_reference(es.references[style], ref_resolution))


def text_prompt(style: str, phrase: str, text: TextFeatureCache) -> Prompt:
    tokens, pooled = text(phrase)
    return Prompt("text", style, phrase, tokens, pooled)


@torch.no_grad()
def evaluate(net: nn.Module, es: EvalSet, text: TextFeatureCache | None, styles: list[str]) -> dict:
    """All figures described in the module docstring; per-style numbers plus means."""
    net.eval()
    recon = edit_views(net, es.inputs, es.labels)
    result: dict = {"reconstruction_psnr": _view_psnr(recon, es.truth[""]), "styles": {}}
    ref_res = net.cfg.ref_resolution
    for k, style in enumerate(styles):
        st = STYLES[style]
        row = {
            "no_edit": _summary(_view_psnr(recon, es.truth[style])),
            "lift_true_2d_edit": _summary(_view_psnr(edit_views(net, es.truth[style][:, 0], es.labels), es.truth[style])),
            "image_prompt": edit_psnr(net, es, style, image_prompt(es, style, ref_res)),
        }
        if text is not None:
            row["text_train_phrase"] = edit_psnr(net, es, style, text_prompt(style, st.train_phrases[k % len(st.train_phrases)], text))
            row["text_heldout_phrase"] = edit_psnr(net, es, style, text_prompt(style, st.heldout_phrases[k % len(st.heldout_phrases)], text))
        result["styles"][style] = row
    keys = sorted({k for row in result["styles"].values() for k in row})
    result["mean_over_styles"] = {
        k: {v: float(np.mean([row[k][v] for row in result["styles"].values() if k in row])) for v in ("input", "novel")} for k in keys
    }
    return result

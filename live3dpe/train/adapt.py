"""Customization (paper §3.3): adapt a trained editor to a new style from a few before/after pairs.

Only the prompt encoder (text projection or MAE) and the normalisation layers of E_t are
tuned, under a wall-clock budget; the loss is the stage-2 distillation loss (Eq. 4-7) with
the "after" images as pseudo-labels and the network's own frozen reconstruction path as
the 3D prior. On the appearance route the prompt encoder and the appearance editor are tuned
with its stage-2 loss (the edit at the input view). The loss-vs-time history is the analogue
of the paper's Table 2.

Pairs folder: `<name>_before.png` / `<name>_after.png` (same camera), optional
`dataset.json` (EG3D labels of the before images; frontal camera otherwise),
`prompt.txt` (the text prompt, first line) or `reference.png` (an image prompt), and
optional `style.txt` (a name for the new style).
"""
from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from live3dpe.model import cameras
from live3dpe.model.image_prompt import preprocess_reference

from .augment import CameraJitter
from .batches import EditBatch, Prompt
from .data import TextFeatureCache
from .objectives import AppearanceWeights, EditWeights, NetPrior, appearance_loss, edit_loss
from .params import adapt_parameter_names, select_trainable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptConfig:
    """Budget and optimiser of one customization run."""

    minutes: float = 5.0
    max_steps: int | None = None
    batch: int = 2
    lr: float = 3e-3
    seed: int = 0


@dataclass
class Pairs:
    """before/after [N, 3, S, S] in [-1, 1], labels [N, 25], and the prompt naming the style."""

    before: Tensor
    after: Tensor
    label: Tensor
    prompt: Prompt


def _read_rgb(path: Path, size: int) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"could not read image {path}")
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[..., ::-1])


def _to_model(rgb: np.ndarray) -> Tensor:
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1


def load_pairs(path: str | Path, input_resolution: int, ref_resolution: int, text: TextFeatureCache | None = None) -> Pairs:
    """Read a pairs folder (layout in the module docstring)."""
    root = Path(path)
    befores = sorted(root.glob("*_before.png"))
    if not befores:
        raise FileNotFoundError(f"{root} has no *_before.png images")
    afters = [p.with_name(p.name.replace("_before.png", "_after.png")) for p in befores]
    missing = [a.name for a in afters if not a.exists()]
    if missing:
        raise FileNotFoundError(f"{root}: missing after images {missing[:3]}")
    before = _to_model(np.stack([_read_rgb(p, input_resolution) for p in befores]))
    after = _to_model(np.stack([_read_rgb(p, input_resolution) for p in afters]))
    labels_file = root / "dataset.json"
    if labels_file.exists():
        by_name = {n: lab for n, lab in json.loads(labels_file.read_text())["labels"]}
        label = torch.tensor([by_name[p.name] for p in befores], dtype=torch.float32)
    else:
        label = cameras.Camera.frontal(len(befores)).label
    style = (root / "style.txt").read_text().strip() if (root / "style.txt").exists() else root.name
    if (root / "reference.png").exists():
        ref = preprocess_reference(_read_rgb(root / "reference.png", ref_resolution), ref_resolution)
        prompt = Prompt("image", style, reference=ref)
    elif (root / "prompt.txt").exists():
        phrase = (root / "prompt.txt").read_text().strip().splitlines()[0]
        tokens, pooled = (text or TextFeatureCache())(phrase)
        prompt = Prompt("text", style, phrase, tokens, pooled)
    else:
        raise FileNotFoundError(f"{root} needs prompt.txt (text prompt) or reference.png (image prompt)")
    return Pairs(before, after, label, prompt)


def write_pairs(path: str | Path, before: np.ndarray, after: np.ndarray, labels: np.ndarray, prompt: str | None = None, reference: np.ndarray | None = None, style: str | None = None) -> Path:
    """Write uint8 [N, H, W, 3] pairs (+ labels [N, 25]) in the folder layout `load_pairs` reads."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (b, a) in enumerate(zip(before, after)):
        names.append(f"{i:04d}_before.png")
        cv2.imwrite(str(root / names[-1]), np.ascontiguousarray(b[..., ::-1]))
        cv2.imwrite(str(root / f"{i:04d}_after.png"), np.ascontiguousarray(a[..., ::-1]))
    (root / "dataset.json").write_text(json.dumps({"labels": [[n, [float(x) for x in lab]] for n, lab in zip(names, labels)]}))
    if prompt is not None:
        (root / "prompt.txt").write_text(prompt + "\n")
    if reference is not None:
        cv2.imwrite(str(root / "reference.png"), np.ascontiguousarray(reference[..., ::-1]))
    if style is not None:
        (root / "style.txt").write_text(style + "\n")
    return root


def adapt(
    net: nn.Module,
    pairs: Pairs,
    cfg: AdaptConfig = AdaptConfig(),
    on_eval: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_at_s: tuple[float, ...] = (),
    weights: EditWeights = EditWeights(),
    jitter: CameraJitter = CameraJitter(),
) -> list[dict[str, float]]:
    """Tune `net` in place; returns the history [{step, time_s, loss, ...eval metrics}].

    `time_s` counts optimisation time only; `on_eval(net)` runs at time 0 and when training
    time first passes each of `eval_at_s` (its own cost is not counted).
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if net.cfg.appearance_route:  # the edit lives in the input view: no 3D prior needed

        def step_loss(batch: EditBatch) -> tuple[Tensor, dict[str, float]]:
            return appearance_loss(net, batch, gen, AppearanceWeights(photometric=0.5))
    else:
        prior = NetPrior(copy.deepcopy(net))

        def step_loss(batch: EditBatch) -> tuple[Tensor, dict[str, float]]:
            return edit_loss(net, prior, batch, gen, jitter, weights)

    net.eval()
    params = select_trainable(net, adapt_parameter_names(net, pairs.prompt.kind), exact=True)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    pending = sorted(eval_at_s)
    history: list[dict[str, float]] = []
    if on_eval is not None:
        history.append({"step": 0, "time_s": 0.0, **on_eval(net)})
    trained, step, measured = 0.0, 0, 0
    n = pairs.before.shape[0]
    while trained < cfg.minutes * 60 and (cfg.max_steps is None or step < cfg.max_steps):
        t0 = time.monotonic()
        idx = torch.randint(n, (min(cfg.batch, n),), generator=gen)
        batch = EditBatch(pairs.before[idx], pairs.label[idx], pairs.after[idx], pairs.prompt)
        loss, metrics = step_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        trained += time.monotonic() - t0
        step += 1
        row = {"step": step, "time_s": round(trained, 2), **metrics}
        if on_eval is not None and pending and trained >= pending[0]:
            while pending and trained >= pending[0]:
                pending.pop(0)
            row.update(on_eval(net))
            measured = step
        history.append(row)
    if on_eval is not None and step and step != measured:
        history[-1].update(on_eval(net))  # the end of the budget is always measured
    net.requires_grad_(False)
    return history
